"""When runs left at an unanswered action are read, on Redis: :class:`RedisExpirySchedule`.

Keys (``<ns>`` = the namespace):

============================= ============ ==================================================
``<ns>:sched`` / ``:due``     hash / zset  run -> entry; run by deadline
``<ns>:sched:order``          zset         run by insertion (the bound drops the oldest first)
============================= ============ ==================================================
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from gateway.state.redis.client import RETENTION
from gateway.state.schedule import ExpiryEntry

__all__ = ["RedisExpirySchedule"]

# Schedule: KEYS = entries hash, due zset, order zset; every script returns the entry count.
_SCHED_PUT = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
while redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) do
  local oldest = redis.call('ZPOPMIN', KEYS[3])[1]
  redis.call('HDEL', KEYS[1], oldest)
  redis.call('ZREM', KEYS[2], oldest)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local order = top[2] and tonumber(top[2]) + 1 or 0
redis.call('ZADD', KEYS[3], order, ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return redis.call('HLEN', KEYS[1])
"""

_SCHED_REMOVE = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.call('HLEN', KEYS[1])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HLEN', KEYS[1])
"""

_SCHED_EARLIEST = """
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not first then return false end
return redis.call('HGET', KEYS[1], first)
"""

_ENTRY = msgspec.json.Decoder(ExpiryEntry)


class RedisExpirySchedule:
    """:class:`~gateway.state.ExpirySchedule` on Redis: entries in a hash, a zset by deadline."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_entries: int = 100_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:sched", f"{namespace}:sched:due", f"{namespace}:sched:order"]
        self._max_entries = max_entries
        self._retention = retention
        self._count = 0
        self._put = client.register_script(_SCHED_PUT)
        self._remove = client.register_script(_SCHED_REMOVE)
        self._earliest = client.register_script(_SCHED_EARLIEST)

    def __len__(self) -> int:
        return self._count

    async def put(self, entry: ExpiryEntry) -> None:
        self._count = await self._put(
            keys=self._keys,
            args=[
                entry.run_id,
                msgspec.json.encode(entry),
                repr(entry.deadline),
                self._max_entries,
                self._retention,
            ],
        )

    async def get(self, run_id: str) -> ExpiryEntry | None:
        raw = await self._client.hget(self._keys[0], run_id)
        return None if raw is None else _ENTRY.decode(raw)

    async def earliest(self) -> ExpiryEntry | None:
        raw = await self._earliest(keys=self._keys)
        return None if raw is None else _ENTRY.decode(raw)

    async def remove(self, run_id: str) -> None:
        self._count = await self._remove(keys=self._keys, args=[run_id, ""])

    async def discard(self, entry: ExpiryEntry) -> None:
        self._count = await self._remove(
            keys=self._keys, args=[entry.run_id, msgspec.json.encode(entry)]
        )

    async def clear(self) -> None:
        await self._client.delete(*self._keys)
        self._count = 0
