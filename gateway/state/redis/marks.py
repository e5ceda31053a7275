"""Runcast's submission of a run's action, for failover, on Redis: :class:`RedisSubmissionMarks`.

Keys (``<ns>`` = the namespace):

======================= ====== ==========================================================
``<ns>:submit:<run>``   string runcast's submission mark of the run's action (JSON)
======================= ====== ==========================================================
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from gateway.state.marks import SubmissionMark, SubmitState
from gateway.state.redis.client import RETENTION

__all__ = ["RedisSubmissionMarks"]

_MARK = msgspec.json.Decoder(SubmissionMark)


class RedisSubmissionMarks:
    """:class:`~gateway.state.SubmissionMarks` on Redis: one key per run, expiring."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str, retention: int = RETENTION
    ) -> None:
        self._client = client
        self._ns = namespace
        self._retention = retention

    async def mark(self, run_id: str, call_ids: tuple[str, ...], state: SubmitState) -> None:
        mark = SubmissionMark(call_ids=call_ids, state=state)
        await self._client.set(self._key(run_id), msgspec.json.encode(mark), ex=self._retention)

    async def get(self, run_id: str) -> SubmissionMark | None:
        raw = await self._client.get(self._key(run_id))
        return None if raw is None else _MARK.decode(raw)

    async def forget(self, run_id: str) -> None:
        await self._client.delete(self._key(run_id))

    def _key(self, run_id: str) -> str:
        return f"{self._ns}:submit:{run_id}"
