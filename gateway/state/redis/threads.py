"""Run -> thread (and response -> conversation), on Redis: :class:`RedisRunThreads`.

Keys (``<ns>`` = the namespace):

================= ====== ==========================================================
``<ns>:threads``  hash   run -> thread ("" = unknown), with ``:order`` by last note
================= ====== ==========================================================
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from gateway.state.redis.client import LRU_TOUCH, RETENTION, as_text

__all__ = ["RedisRunThreads"]

_THREAD_NOTE = (
    """
local known = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == '' and known and known ~= '' then return redis.call('HLEN', KEYS[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
"""
    + LRU_TOUCH
    + "return redis.call('HLEN', KEYS[1])"
)


class RedisRunThreads:
    """:class:`~gateway.state.RunThreads` on Redis, bounded to ``max_runs`` noted last."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_runs: int = 100_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:threads", f"{namespace}:threads:order"]
        self._max_runs = max_runs
        self._retention = retention
        self._count = 0
        self._note = client.register_script(_THREAD_NOTE)

    def __len__(self) -> int:
        return self._count

    async def note(self, run_id: str, thread_id: str | None) -> None:
        self._count = await self._note(
            keys=self._keys, args=[run_id, self._max_runs, self._retention, thread_id or ""]
        )

    async def thread_of(self, run_id: str) -> str | None:
        return _thread(await self._client.hget(self._keys[0], run_id))

    async def recent(self, limit: int) -> list[tuple[str, str | None]]:
        if limit <= 0:
            return []
        runs = [as_text(run) for run in await self._client.zrevrange(self._keys[1], 0, limit - 1)]
        if not runs:
            return []
        threads = await self._client.hmget(self._keys[0], runs)
        return [(run, _thread(thread)) for run, thread in zip(runs, threads, strict=True)]


def _thread(value: Any) -> str | None:
    return as_text(value) or None if value is not None else None
