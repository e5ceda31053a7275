"""The state role's Redis client, and what the Redis stores share.

The *state* role sends requests and short scripts only, never a blocking read, so a socket
timeout is safe; every store of one process is on one such client. Beside it: the namespace of
the gateway's keys, the retention of the bounded maps and the LRU script two of them use.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway.redis_pools import pooled_client

__all__ = [
    "LRU_TOUCH",
    "RETENTION",
    "STATE_NAMESPACE",
    "as_text",
    "state_client",
    "state_namespace",
]

RETENTION = 7 * 24 * 3600
"""Seconds a bounded map outlives its last write (a cluster left idle this long starts empty)."""


STATE_NAMESPACE = "rc:state"
"""The gateway's state keys in Redis mode with the default ``--redis-namespace`` (``rc``; the
broker's channel logs use the namespace itself as their prefix)."""


def state_namespace(cluster: str) -> str:
    """The state keys' namespace of the cluster namespace ``cluster`` (``--redis-namespace``)."""
    return f"{cluster}:state"


def state_client(url: str) -> aioredis.Redis:
    """The client of the state role: short commands, 5 s socket timeout, a bounded pool whose
    calls wait for a free connection (``gateway.redis_pools``)."""
    return pooled_client(
        url,
        wait=5,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=15,
    )


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# LRU maps: KEYS = values hash, order zset (score = a per-map counter kept as the top score).
LRU_TOUCH = """
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local order = top[2] and tonumber(top[2]) + 1 or 0
redis.call('ZADD', KEYS[2], order, ARGV[1])
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[2]) do
  redis.call('HDEL', KEYS[1], redis.call('ZPOPMIN', KEYS[2])[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
"""
