"""What a Responses or Chat reducer's state holds, for the memory budget: :class:`StateSize`.

The accumulators keep the text and objects a stream built, not its events: 200 chat deltas of a
few characters fold into a 4 KB snapshot from 62 KB of chunk JSON, so charging the events folded
over-charged each finished stream's channel some 15 times. The size charged is the snapshot's,
measured again once the event bytes folded since the last measure exceed both
:data:`REMEASURE_BYTES` and that measure (so measuring encodes at most about one byte per byte
folded), plus the bytes folded since (an upper bound until the next measure).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["REMEASURE_BYTES", "StateSize"]

REMEASURE_BYTES = 4096
"""Event bytes folded before the snapshot is measured again (or its size, when larger)."""


class StateSize:
    """The estimate of one reducer's state: :meth:`fold` each event's bytes, read :meth:`value`."""

    __slots__ = ("_measured", "_unmeasured")

    def __init__(self) -> None:
        self._measured = 0
        self._unmeasured = 0

    def fold(self, nbytes: int) -> None:
        self._unmeasured += nbytes

    def reset(self) -> None:
        """The state started afresh (a channel's next stream)."""
        self._measured = self._unmeasured = 0

    def value(self, measure: Callable[[], int]) -> int:
        """Bytes held; ``measure`` gives the snapshot's size when it is due."""
        if self._unmeasured > max(REMEASURE_BYTES, self._measured):
            self._measured = measure()
            self._unmeasured = 0
        return self._measured + self._unmeasured
