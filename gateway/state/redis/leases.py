"""Who owns a run, on Redis: :class:`RedisRunLeases`.

Keys (``<ns>`` = the namespace):

========================= ====== ==========================================================
``<ns>:fence``            string the fencing token counter (``INCR``: tokens only grow)
``<ns>:lease:<run>``      string ``<token>|<expires_ms>|<owner>``, ``PX`` = the lease's ttl
``<ns>:lease:<run>:last`` string the last token handed out on the run (outlives release and
                                 expiry: the fence, and who may take a lapsed lease back)
========================= ====== ==========================================================

The fence is kept :data:`RETENTION` after each acquisition (a lapsed lease may be taken back,
or its holder come back from a partition, at any time while its run lives) and
:data:`FENCE_AFTER_RELEASE` once its holder released the lease: one key per run, kept a week,
would hold millions of keys in a busy cluster.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway.hub import Fence
from gateway.state.leases import Lease
from gateway.state.redis.client import RETENTION, as_text

__all__ = ["FENCE_AFTER_RELEASE", "RedisRunLeases"]

FENCE_AFTER_RELEASE = 3600
"""Seconds a released run's fence still refuses its older holders (a node back from a partition
with events of that run held, ``hub/redis/tail.py``)."""

_ACQUIRE = """
if ARGV[3] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return false end
if ARGV[4] ~= '' then
  local last = redis.call('GET', KEYS[3])
  if last and last ~= ARGV[4] then return false end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], token, 'EX', ARGV[5])
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
local value = token .. '|' .. expires .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

_RENEW = """
local value = redis.call('GET', KEYS[1])
if not value or value ~= ARGV[1] then return false end
local sep = string.find(value, '|', 1, true)
local rest = string.sub(value, string.find(value, '|', sep + 1, true) + 1)
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
value = string.sub(value, 1, sep) .. expires .. '|' .. rest
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

_RELEASE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if string.sub(value, 1, string.find(value, '|', 1, true) - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"""


class RedisRunLeases:
    """:class:`~gateway.state.RunLeases` on Redis; expiry is the key's own ``PX``."""

    def __init__(self, client: aioredis.Redis, *, namespace: str) -> None:
        self._client = client
        self._ns = namespace
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(
        self,
        run_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: bool = False,
        after: int | None = None,
    ) -> Lease | None:
        key = self._key(run_id)
        value = await self._acquire(
            keys=[key, f"{self._ns}:fence", f"{key}:last"],
            args=[owner, _ms(ttl), int(take_over), "" if after is None else after, RETENTION],
        )
        return None if value is None else _lease(run_id, value)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease | None:
        value = await self._renew(keys=[self._key(lease.run_id)], args=[_value(lease), _ms(ttl)])
        return None if value is None else _lease(lease.run_id, value)

    async def release(self, lease: Lease) -> bool:
        key = self._key(lease.run_id)
        return bool(
            await self._release(keys=[key, f"{key}:last"], args=[lease.token, FENCE_AFTER_RELEASE])
        )

    async def holder(self, run_id: str) -> Lease | None:
        value = await self._client.get(self._key(run_id))
        return None if value is None else _lease(run_id, value)

    def fence(self, lease: Lease) -> Fence:
        # The last token handed out, not the lease itself: a lease released or lapsed since
        # still fences out every older holder.
        return Fence(f"{self._key(lease.run_id)}:last", lease.token)

    def _key(self, run_id: str) -> str:
        return f"{self._ns}:lease:{run_id}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _lease(run_id: str, value: Any) -> Lease:
    token, expires_ms, owner = as_text(value).split("|", 2)
    return Lease(run_id=run_id, owner=owner, token=int(token), expires_at=int(expires_ms) / 1000)


def _value(lease: Lease) -> str:
    return f"{lease.token}|{round(lease.expires_at * 1000)}|{lease.owner}"
