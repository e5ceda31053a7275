"""The state implementations every test in this directory runs against, by name.

A second implementation (a network store) joins the suite by adding its factory to each dict,
as in a shared conformance suite.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.state import (
    ActionClaims,
    ExpirySchedule,
    MemoryActionClaims,
    MemoryExpirySchedule,
    MemoryRunLeases,
    MemoryRunThreads,
    MemoryToolRounds,
    RunLeases,
    RunThreads,
    ToolRounds,
)

BOUND = 3
"""The bound every bounded store is built with here (the tests fill it)."""

LEASES: dict[str, Callable[[], RunLeases]] = {"memory": MemoryRunLeases}
CLAIMS: dict[str, Callable[[], ActionClaims]] = {
    "memory": lambda: MemoryActionClaims(takeover_timeout=0.2)
}
SCHEDULES: dict[str, Callable[[], ExpirySchedule]] = {
    "memory": lambda: MemoryExpirySchedule(max_entries=BOUND)
}
THREADS: dict[str, Callable[[], RunThreads]] = {"memory": lambda: MemoryRunThreads(max_runs=BOUND)}
ROUNDS: dict[str, Callable[[], ToolRounds]] = {"memory": lambda: MemoryToolRounds(max_runs=BOUND)}
