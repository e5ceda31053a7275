"""The lag policy: when an output that is behind its reader gets cut off.

One policy for every output of a run (subscriber sinks, the creator's feed), so a reader at full
speed is never cut off by the size of one event, and a reader that stalls always is.

An output is allowed ``limit`` bytes waiting for its peer, plus room for the largest single event
queued since it last had no more than ``limit`` waiting. An event of any size is therefore
accepted whenever the backlog is within ``limit`` (a long ``thread.message.completed``, a replay),
and the small events that follow it in the same burst are not charged for it while it drains. A
stalled reader's backlog grows past ``limit`` plus that room within ``limit`` bytes of further
events, so what one output holds stays within ``limit`` plus its largest event.
"""

from __future__ import annotations

__all__ = ["LagPolicy"]


class LagPolicy:
    """Admits or refuses each event for one output, given the bytes already waiting."""

    __slots__ = ("_room", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self._room = 0

    def admits(self, waiting: int, size: int) -> bool:
        """Whether an event of ``size`` bytes may join ``waiting`` bytes (False: cut off)."""
        if waiting <= self.limit:
            # Caught up: a large event let in earlier is no longer owed room.
            self._room = 0
        if size > self._room:
            self._room = size
        return waiting + size <= self.limit + self._room

    def within(self, waiting: int) -> bool:
        """Whether ``waiting`` bytes, with no event added, are still within the allowance."""
        if waiting <= self.limit:
            self._room = 0
            return True
        return waiting <= self.limit + self._room
