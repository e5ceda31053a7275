"""A channel's bounded history: the newest events, limited by count and by bytes.

Seqs are contiguous, so only the events are stored and an event's seq is ``first_seq`` plus its
index. Eviction drops the oldest events first (spec: resume is bounded, older positions get the
snapshot). Each event also keeps the broker-wide generation of the publish that brought it, so the
memory budget (``budget.py``) can evict the oldest history across all channels first.

While its channel rests (``Channel.pack``, see ``packed.py``) the history holds its events and
generations as tuples, which the cycle collector stops tracking (their items are untracked); the
next change makes them deques again.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import cast

from gateway.hub.broker import HubEvent

__all__ = ["ENTRY_OVERHEAD", "History"]

ENTRY_OVERHEAD = 64
"""Bytes charged per event on top of name and data: the Struct and deque slots, roughly."""


class History:
    """Events ``first_seq .. last_seq``; appending may evict from the front."""

    __slots__ = ("_bytes", "_events", "_first_seq", "_gens", "max_bytes", "max_events")

    def __init__(self, *, max_events: int, max_bytes: int) -> None:
        if max_events < 0 or max_bytes < 0:
            raise ValueError("history limits must be >= 0")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: deque[HubEvent] | tuple[HubEvent, ...] = deque()
        # Parallel to _events; one int object per publish, shared by every channel it reached.
        self._gens: deque[int] | tuple[int, ...] = deque()
        self._first_seq = 1
        self._bytes = 0

    @staticmethod
    def cost(event: HubEvent) -> int:
        return len(event.name) + len(event.data) + ENTRY_OVERHEAD

    @property
    def first_seq(self) -> int:
        """Seq of the oldest event held; ``last_seq + 1`` when empty."""
        return self._first_seq

    @property
    def last_seq(self) -> int:
        return self._first_seq + len(self._events) - 1

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def oldest_gen(self) -> int | None:
        """Generation of the oldest event held (None when empty)."""
        return self._gens[0] if self._gens else None

    def __len__(self) -> int:
        return len(self._events)

    def pack(self) -> None:
        """Hold the events as tuples until the next change (see the module docstring)."""
        if type(self._events) is deque:
            self._events = tuple(self._events)
            self._gens = tuple(self._gens)

    def _live(self) -> tuple[deque[HubEvent], deque[int]]:
        events, gens = self._events, self._gens
        if type(events) is tuple:
            events = self._events = deque(events)
            gens = self._gens = deque(gens)
        return cast("deque[HubEvent]", events), cast("deque[int]", gens)

    def append(self, event: HubEvent, gen: int = 0) -> None:
        """Add the event numbered ``last_seq + 1``, then evict until within both limits."""
        events, gens = self._live()
        events.append(event)
        gens.append(gen)
        nbytes = self._bytes + len(event.name) + len(event.data) + ENTRY_OVERHEAD
        # Inlined _pop: once a channel is at its limit, every append evicts one (the hot path).
        while events and (len(events) > self.max_events or nbytes > self.max_bytes):
            old = events.popleft()
            gens.popleft()
            nbytes -= len(old.name) + len(old.data) + ENTRY_OVERHEAD
            self._first_seq += 1
        self._bytes = nbytes

    def evict_oldest(self, nbytes: int, *, through_gen: int) -> int:
        """Drop the oldest events published at or before ``through_gen`` until at least ``nbytes``
        are freed (or none is left); returns the bytes freed."""
        freed = 0
        events, gens = self._live()
        while gens and freed < nbytes and gens[0] <= through_gen:
            cost = self.cost(events.popleft())
            gens.popleft()
            self._bytes -= cost
            self._first_seq += 1
            freed += cost
        return freed

    def holds_after(self, since: int) -> bool:
        """True when every event after ``since`` up to ``last_seq`` is held (resume is possible)."""
        return self._first_seq - 1 <= since <= self.last_seq

    def after(self, since: int) -> Iterator[tuple[int, HubEvent]]:
        """(seq, event) for the held events with seq > ``since``."""
        start = max(since + 1 - self._first_seq, 0)
        return zip(
            itertools.count(self._first_seq + start),
            itertools.islice(self._events, start, None),
            strict=False,
        )

    def skip_to(self, last_seq: int) -> None:
        """Make an empty history continue after ``last_seq`` (a log mirrored from its middle)."""
        if self._events:
            raise RuntimeError("skip_to needs an empty history")
        self._first_seq = last_seq + 1

    def clear(self) -> None:
        self._first_seq = self.last_seq + 1
        self._events = deque()
        self._gens = deque()
        self._bytes = 0
