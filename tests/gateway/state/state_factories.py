"""The state implementations every test in this directory runs against, by name.

Each factory gets a :class:`Backend`: memory factories ignore it; Redis factories build their
store on its client under its namespace (fresh per test, so tests never see each other's keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import redis.asyncio as aioredis

from gateway.state import (
    ActionClaims,
    ExpirySchedule,
    LiveRuns,
    MemoryActionClaims,
    MemoryExpirySchedule,
    MemoryLiveRuns,
    MemoryRunLeases,
    MemoryRunThreads,
    MemorySubmissionMarks,
    MemoryToolRounds,
    RunLeases,
    RunThreads,
    SubmissionMarks,
    ToolRounds,
)
from gateway.state.redis import (
    RedisActionClaims,
    RedisExpirySchedule,
    RedisLiveRuns,
    RedisRunLeases,
    RedisRunThreads,
    RedisSubmissionMarks,
    RedisToolRounds,
)

BOUND = 3
"""The bound every bounded store is built with here (the tests fill it)."""

TAKEOVER = 0.2
"""How long a take-over waits for a stuck claimant here."""


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    client: aioredis.Redis | None = None
    namespace: str = ""

    @property
    def redis(self) -> aioredis.Redis:
        assert self.client is not None
        return self.client


LEASES: dict[str, Callable[[Backend], RunLeases]] = {
    "memory": lambda _: MemoryRunLeases(),
    "redis": lambda b: RedisRunLeases(b.redis, namespace=b.namespace),
}
CLAIMS: dict[str, Callable[[Backend], ActionClaims]] = {
    "memory": lambda _: MemoryActionClaims(takeover_timeout=TAKEOVER),
    "redis": lambda b: RedisActionClaims(
        b.redis, namespace=b.namespace, takeover_timeout=TAKEOVER, poll=0.01
    ),
}
SCHEDULES: dict[str, Callable[[Backend], ExpirySchedule]] = {
    "memory": lambda _: MemoryExpirySchedule(max_entries=BOUND),
    "redis": lambda b: RedisExpirySchedule(b.redis, namespace=b.namespace, max_entries=BOUND),
}
THREADS: dict[str, Callable[[Backend], RunThreads]] = {
    "memory": lambda _: MemoryRunThreads(max_runs=BOUND),
    "redis": lambda b: RedisRunThreads(b.redis, namespace=b.namespace, max_runs=BOUND),
}
ROUNDS: dict[str, Callable[[Backend], ToolRounds]] = {
    "memory": lambda _: MemoryToolRounds(max_runs=BOUND),
    "redis": lambda b: RedisToolRounds(b.redis, namespace=b.namespace, max_runs=BOUND),
}
LIVE: dict[str, Callable[[Backend], LiveRuns]] = {
    "memory": lambda _: MemoryLiveRuns(),
    "redis": lambda b: RedisLiveRuns(b.redis, namespace=b.namespace),
}
MARKS: dict[str, Callable[[Backend], SubmissionMarks]] = {
    "memory": lambda _: MemorySubmissionMarks(),
    "redis": lambda b: RedisSubmissionMarks(b.redis, namespace=b.namespace),
}
