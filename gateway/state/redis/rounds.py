"""Tool rounds per run, on Redis: :class:`RedisToolRounds`.

Keys (``<ns>`` = the namespace):

================= ====== ==========================================================
``<ns>:rounds``   hash   run -> round state, with ``:order`` by last use
================= ====== ==========================================================
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from gateway.state.redis.client import LRU_TOUCH, RETENTION
from gateway.state.rounds import RoundState

__all__ = ["RedisToolRounds"]

_ROUNDS_GET = (
    """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return {false, redis.call('HLEN', KEYS[1])} end
"""
    + LRU_TOUCH
    + "return {state, redis.call('HLEN', KEYS[1])}"
)

_ROUNDS_SWAP = (
    """
local state = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[6]
if state ~= ARGV[4] then return {0, redis.call('HLEN', KEYS[1])} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
"""
    + LRU_TOUCH
    + "return {1, redis.call('HLEN', KEYS[1])}"
)

_ROUNDS_FORGET = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HLEN', KEYS[1])
"""

_ROUND = msgspec.json.Decoder(RoundState)
_INITIAL_ROUND = msgspec.json.encode(RoundState())


class RedisToolRounds:
    """:class:`~gateway.state.ToolRounds` on Redis, bounded to ``max_runs`` used last.

    A swap compares the stored encoding with ``expected``'s: msgspec encodes equal states alike.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_runs: int = 10_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:rounds", f"{namespace}:rounds:order"]
        self._max_runs = max_runs
        self._retention = retention
        self._count = 0
        self._get = client.register_script(_ROUNDS_GET)
        self._swap = client.register_script(_ROUNDS_SWAP)
        self._forget = client.register_script(_ROUNDS_FORGET)

    def __len__(self) -> int:
        return self._count

    async def get(self, run_id: str) -> RoundState:
        raw, self._count = await self._get(
            keys=self._keys, args=[run_id, self._max_runs, self._retention]
        )
        return RoundState() if raw is None else _ROUND.decode(raw)

    async def swap(self, run_id: str, expected: RoundState, new: RoundState) -> bool:
        swapped, self._count = await self._swap(
            keys=self._keys,
            args=[
                run_id,
                self._max_runs,
                self._retention,
                msgspec.json.encode(expected),
                msgspec.json.encode(new),
                _INITIAL_ROUND,
            ],
        )
        return bool(swapped)

    async def forget(self, run_id: str) -> None:
        self._count = await self._forget(keys=self._keys, args=[run_id])
