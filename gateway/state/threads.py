"""Which thread each run is on, for auth: :class:`RunThreads` and its in-memory form.

A thread's subscribe token opens the channels of that thread's runs, so the subscribe path asks
which thread a run is on. Runs are noted from the upstream's own run events (never from a
caller's URL). Bounded: past ``max_runs`` the runs noted longest ago are forgotten first.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Protocol

__all__ = ["MemoryRunThreads", "RunThreads"]


class RunThreads(Protocol):
    """run id -> thread id of the runs that passed through runcast."""

    def __len__(self) -> int:
        """Runs held (statistics)."""
        ...

    async def note(self, run_id: str, thread_id: str | None) -> None:
        """``run_id`` is on ``thread_id`` (None: unknown, which never hides a known thread)."""
        ...

    async def thread_of(self, run_id: str) -> str | None:
        """The run's thread, None if unknown."""
        ...

    async def recent(self, limit: int) -> list[tuple[str, str | None]]:
        """Up to ``limit`` runs, most recently noted first: (run id, thread id)."""
        ...


class MemoryRunThreads:
    """:class:`RunThreads` for one process."""

    def __init__(self, *, max_runs: int = 100_000) -> None:
        self._max_runs = max_runs
        self._threads: OrderedDict[str, str | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._threads)

    async def note(self, run_id: str, thread_id: str | None) -> None:
        if thread_id is None and self._threads.get(run_id) is not None:
            return
        self._threads[run_id] = thread_id
        self._threads.move_to_end(run_id)
        while len(self._threads) > self._max_runs:
            self._threads.popitem(last=False)

    async def thread_of(self, run_id: str) -> str | None:
        return self._threads.get(run_id)

    async def recent(self, limit: int) -> list[tuple[str, str | None]]:
        return list(itertools.islice(reversed(self._threads.items()), limit))
