"""When runs left at an unanswered action are looked at: :class:`ExpirySchedule` and its in-memory form.

One entry per run, ordered by deadline (Unix time, so every process reads it alike). The expiry
watcher (``gateway.runs.expiry``) reads the earliest entry, sleeps until its deadline, works it,
then discards or re-arms it; a run that goes on through runcast is removed. Bounded: past
``max_entries`` the oldest entries are dropped first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Protocol

import msgspec

__all__ = ["ExpiryEntry", "ExpirySchedule", "MemoryExpirySchedule"]

log = logging.getLogger("runcast.relay")


class ExpiryEntry(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str
    api_key: str | None
    """The key the run was created with: reading it needs the same project."""
    seq: int
    """The run channel's seq of the segment's ``done``: anything later means the run went on."""
    deadline: float
    """Unix time at which the run is read."""
    retried: bool = False


class ExpirySchedule(Protocol):
    """The runs waiting at an unanswered action, by deadline."""

    def __len__(self) -> int:
        """Entries held (statistics)."""
        ...

    async def put(self, entry: ExpiryEntry) -> None:
        """Schedule ``entry``, replacing any entry of the same run."""
        ...

    async def get(self, run_id: str) -> ExpiryEntry | None: ...

    async def earliest(self) -> ExpiryEntry | None:
        """The entry with the earliest deadline (it stays scheduled)."""
        ...

    async def remove(self, run_id: str) -> None:
        """Stop watching ``run_id``."""
        ...

    async def discard(self, entry: ExpiryEntry) -> None:
        """Remove ``entry`` if it is still the run's current one (not replaced meanwhile)."""
        ...

    async def clear(self) -> None: ...


class MemoryExpirySchedule:
    """:class:`ExpirySchedule` for one process: a dict plus a lazily pruned deadline heap."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._entries: dict[str, ExpiryEntry] = {}
        self._heap: list[tuple[float, int, ExpiryEntry]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, entry: ExpiryEntry) -> None:
        self._entries.pop(entry.run_id, None)
        while len(self._entries) >= self._max_entries:
            dropped = next(iter(self._entries))
            del self._entries[dropped]
            log.warning("run %s: too many runs waiting for an action; not watching it", dropped)
        self._entries[entry.run_id] = entry
        heapq.heappush(self._heap, (entry.deadline, next(self._order), entry))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [item for item in self._heap if self._live(item[2])]
            heapq.heapify(self._heap)

    async def get(self, run_id: str) -> ExpiryEntry | None:
        return self._entries.get(run_id)

    async def earliest(self) -> ExpiryEntry | None:
        while self._heap and not self._live(self._heap[0][2]):
            heapq.heappop(self._heap)
        return self._heap[0][2] if self._heap else None

    async def remove(self, run_id: str) -> None:
        self._entries.pop(run_id, None)

    async def discard(self, entry: ExpiryEntry) -> None:
        if self._entries.get(entry.run_id) == entry:
            del self._entries[entry.run_id]

    async def clear(self) -> None:
        self._entries.clear()
        self._heap.clear()

    def _live(self, entry: ExpiryEntry) -> bool:
        return self._entries.get(entry.run_id) is entry
