"""The connection pools of runcast's Redis clients: bounded, and waiting when all are in use.

redis-py 8's default pool holds at most 100 connections and, once they are all taken, fails the
next command at once with ``MaxConnectionsError("Too many connections")``. A busy node has more
calls in flight than that (each relay publishing, each store renewing or claiming), and such a
failure reads as Redis being down: relays failed and subscribers were refused 503 at 200
concurrent runs. :func:`pooled_client` builds the client on a ``BlockingConnectionPool``
instead: a call beyond ``max_connections`` waits up to ``wait`` seconds for a connection, and
only then fails (``redis.exceptions.ConnectionError``), as an unreachable server would.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

__all__ = ["POOL_SIZE", "pooled_client"]

POOL_SIZE = 64
"""Connections one client opens at most; calls are short, so a few dozen carry thousands/s."""


def pooled_client(
    url: str, *, wait: float, max_connections: int = POOL_SIZE, **connection: Any
) -> aioredis.Redis:
    """A client of ``url`` whose calls wait up to ``wait`` s for one of ``max_connections``
    pooled connections; ``connection`` are redis-py's connection options (timeouts, retry)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait, **connection
    )
    return aioredis.Redis.from_pool(pool)
