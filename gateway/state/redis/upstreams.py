"""Which upstream each node of a cluster relays to, so that two clusters on one namespace are seen.

Nodes of one cluster must share ``--upstream``: a node takes over the runs of a dead one and reads
them from its own upstream. Two clusters on one Redis db and one ``--redis-namespace`` do not
know each other: a node of one takes the other's runs over, its upstream answers 404, and it ends
runs that completed upstream with ``runcast.upstream_error``. Each node records the identity of
its upstream (a hash of its base URL, never the key) and the time under
``<namespace>:upstreams`` (a hash: node id -> ``<identity> <unix time>``), at start (or once
Redis answers) and again every :data:`REFRESH_SECONDS`, and is told the other nodes' records
that name another identity: the caller logs them (a warning naming the clash). A node stopping
cleanly removes its record (:func:`forget_upstream`); one that died leaves it, and records not
refreshed for :data:`STALE_AFTER` are neither compared nor kept, so a cluster moved to another
upstream is not told of a clash with its own former nodes for long.
"""

from __future__ import annotations

import hashlib
import time

import msgspec
import redis.asyncio as aioredis

from gateway.state.redis.client import as_text

__all__ = [
    "REFRESH_SECONDS",
    "STALE_AFTER",
    "Clash",
    "check_upstream",
    "forget_upstream",
    "upstream_identity",
]

REFRESH_SECONDS = 60.0
"""How often a node records its upstream again."""
STALE_AFTER = 3 * REFRESH_SECONDS
"""A record not refreshed for this long is a node that is gone."""


class Clash(msgspec.Struct, frozen=True, kw_only=True):
    """Another node of the namespace recorded another upstream."""

    node_id: str
    identity: str
    recorded_at: float


def upstream_identity(base_url: str) -> str:
    """The identity of the upstream at ``base_url``: 16 hex digits of its SHA-256 (a trailing
    slash is no difference)."""
    return hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]


async def check_upstream(
    client: aioredis.Redis, *, namespace: str, node_id: str, identity: str
) -> list[Clash]:
    """Record this node's upstream ``identity``; the other nodes' records naming another."""
    key = f"{namespace}:upstreams"
    now = time.time()
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, node_id, f"{identity} {now:.0f}")
        pipe.expire(key, int(STALE_AFTER))
        pipe.hgetall(key)
        *_, records = await pipe.execute()
    clashes: list[Clash] = []
    stale: list[str] = []
    for field, value in records.items():
        node, (other, _, at) = as_text(field), as_text(value).partition(" ")
        recorded_at = float(at or 0)
        if now - recorded_at > STALE_AFTER:
            stale.append(node)
        elif node != node_id and other != identity:
            clashes.append(Clash(node_id=node, identity=other, recorded_at=recorded_at))
    if stale:
        await client.hdel(key, *stale)
    return clashes


async def forget_upstream(client: aioredis.Redis, *, namespace: str, node_id: str) -> None:
    """Remove this node's record (it stops)."""
    await client.hdel(f"{namespace}:upstreams", node_id)
