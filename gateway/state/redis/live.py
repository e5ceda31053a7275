"""Runs being pumped, for failover, on Redis: :class:`RedisLiveRuns`.

Keys (``<ns>`` = the namespace):

================= ====== ==========================================================
``<ns>:live``     zset   runs being pumped, by lease expiry (ms), with ``:runs``
                         (hash: run -> JSON record)
================= ====== ==========================================================
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway.state.live import LiveRun
from gateway.state.redis.client import RETENTION

__all__ = ["RedisLiveRuns"]

_LIVE = msgspec.json.Decoder(LiveRun)


class RedisLiveRuns:
    """:class:`~gateway.state.LiveRuns` on Redis: a zset by lease expiry (ms), records in a hash."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str, retention: int = RETENTION
    ) -> None:
        self._client = client
        self._due = f"{namespace}:live"
        self._runs = f"{namespace}:live:runs"
        self._retention = retention

    async def put(self, run: LiveRun) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._runs, run.run_id, msgspec.json.encode(run))
            pipe.zadd(self._due, {run.run_id: round(run.expires_at * 1000)})
            pipe.expire(self._runs, self._retention)
            pipe.expire(self._due, self._retention)
            await pipe.execute()

    async def touch(self, run_id: str, expires_at: float) -> None:
        await self._client.zadd(self._due, {run_id: round(expires_at * 1000)}, xx=True)

    async def remove(self, run_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._due, run_id)
            pipe.hdel(self._runs, run_id)
            await pipe.execute()

    async def expired(self, now: float, *, limit: int) -> list[LiveRun]:
        due: list[Any] = await self._client.zrangebyscore(
            self._due, "-inf", round(now * 1000), start=0, num=limit
        )
        if not due:
            return []
        records = await self._client.hmget(self._runs, due)
        runs: list[LiveRun] = []
        for run_id, raw in zip(due, records, strict=True):
            if raw is None:
                await self._client.zrem(self._due, run_id)  # a record that expired alone
                continue
            runs.append(_LIVE.decode(raw))
        return runs
