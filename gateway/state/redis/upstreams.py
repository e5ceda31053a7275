"""Which upstream each node of a cluster relays to, so that two clusters on one namespace are seen.

Nodes of one cluster must share ``--upstream``: a node takes over the runs of a dead one and reads
them from its own upstream. Two clusters on one Redis db and one ``--redis-namespace`` do not
know each other: a node of one takes the other's runs over, its upstream answers 404, and it ends
runs that completed upstream with ``runcast.upstream_error``. At start each node records the
identity of its upstream (a hash of its base URL, never the key) and the time under
``<namespace>:upstreams`` (a hash: node id -> ``<identity> <unix time>``, expiring ``RETENTION``
after its last write), and is told the other nodes' records that name another identity: the
caller logs them (a warning naming the clash). Records older than ``RETENTION`` are dropped.
"""

from __future__ import annotations

import hashlib
import time

import msgspec
import redis.asyncio as aioredis

from gateway.state.redis.client import RETENTION, as_text

__all__ = ["Clash", "check_upstream", "upstream_identity"]


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
        pipe.expire(key, RETENTION)
        pipe.hgetall(key)
        *_, records = await pipe.execute()
    clashes: list[Clash] = []
    stale: list[str] = []
    for field, value in records.items():
        node, (other, _, at) = as_text(field), as_text(value).partition(" ")
        recorded_at = float(at or 0)
        if now - recorded_at > RETENTION:
            stale.append(node)
        elif node != node_id and other != identity:
            clashes.append(Clash(node_id=node, identity=other, recorded_at=recorded_at))
    if stale:
        await client.hdel(key, *stale)
    return clashes
