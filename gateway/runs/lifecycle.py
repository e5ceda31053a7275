"""The phases of one run relay and the inputs that move it between them, as data (no I/O).

Theory of operation. A relay (``relay.py``) pumps one or more upstream responses ("segments")
of one run into the hub. Everything that decides *where the relay is* lives in
:data:`TRANSITIONS`: the relay feeds an :class:`Input` at each point where something happened
(the first event of a segment, a clean end, a failure, an action held, an answer decided...),
and :meth:`Lifecycle.feed` returns the new :class:`Phase`, or raises :class:`LifecycleError` for
a pair the table does not list, so a path nobody designed shows up at once instead of running on.

::

    OPENING ──first event──► STREAMING ──clean end──► ENDED
       │                       │   │
       │ failure               │   └─action held──► HOLDING ──clean end──► ANSWERING
       ▼                       │ failure               │ failure              │  │ closed
    START_FAILED               ▼                       ▼                      │  └──────► ENDED
                           RECOVERING ◄────────────────┘        outputs sent  ▼
                             │  │  └─action held──► HOLDING ─recovered─► ANSWERING  CONTINUING
                  recovered  │  │ gave up                                  first event │ │ refused
                             ▼  ▼                                       ◄── STREAMING ─┘ └──► ENDED
                          ENDED  FAILED

``START_FAILED``: nothing was published (the upstream refused or failed before any event); the
creator gets the upstream's error. ``RECOVERING``: a stream broke after events; the run is being
polled. ``FAILED``: its end could not be learnt. What the run's *status* is (terminal, waiting
at an action) is data the relay keeps beside the phase; the phase says what the relay is doing.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "Input", "Lifecycle", "LifecycleError", "Phase"]


class Phase(enum.Enum):
    OPENING = "opening"
    """Started; the upstream's first event has not arrived."""
    STREAMING = "streaming"
    """Pumping a segment."""
    HOLDING = "holding"
    """Pumping a segment that reached a ``requires_action`` runcast answers (its end is held)."""
    ANSWERING = "answering"
    """The segment ended; the action handler decides."""
    CONTINUING = "continuing"
    """runcast's outputs were sent; waiting for the continuation's first event."""
    RECOVERING = "recovering"
    """A stream broke after events; the run's end is being learnt."""
    ENDED = "ended"
    """The relay's last segment ended (the run is over, or waits for someone else)."""
    START_FAILED = "start_failed"
    """Failed before any event: nothing was published."""
    FAILED = "failed"
    """A stream broke and the run's end could not be learnt."""


class Input(enum.Enum):
    FIRST_EVENT = "first_event"
    """A segment's first event arrived."""
    ACTION_HELD = "action_held"
    """A ``requires_action`` that runcast answers was published and held."""
    SEGMENT_END = "segment_end"
    """The upstream response ended cleanly (or carried no event at all)."""
    STREAM_FAILED = "stream_failed"
    """The upstream response failed (HTTP error, cut, timeout, protocol error)."""
    SUBMITTED = "submitted"
    """The handler's outputs were sent; the continuation's stream is open."""
    CLOSED = "closed"
    """The held action was ended as the upstream sent it (skipped, superseded, cancelled)."""
    REFUSED = "refused"
    """The upstream refused runcast's outputs (400) before any continuation event."""
    RECOVERED = "recovered"
    """The broken run was found settled and its state published."""
    GAVE_UP = "gave_up"
    """The broken run's end could not be learnt in time."""
    TAKEN_OVER = "taken_over"
    """A dead owner's run was taken over: it is recovered like a broken stream's."""


_P = Phase
_I = Input

TRANSITIONS: Final[dict[tuple[Phase, Input], Phase]] = {
    (_P.OPENING, _I.FIRST_EVENT): _P.STREAMING,
    (_P.OPENING, _I.SEGMENT_END): _P.START_FAILED,
    (_P.OPENING, _I.STREAM_FAILED): _P.START_FAILED,
    (_P.OPENING, _I.TAKEN_OVER): _P.RECOVERING,
    (_P.STREAMING, _I.ACTION_HELD): _P.HOLDING,
    (_P.STREAMING, _I.SEGMENT_END): _P.ENDED,
    (_P.STREAMING, _I.STREAM_FAILED): _P.RECOVERING,
    (_P.HOLDING, _I.ACTION_HELD): _P.HOLDING,
    (_P.HOLDING, _I.SEGMENT_END): _P.ANSWERING,
    (_P.HOLDING, _I.STREAM_FAILED): _P.RECOVERING,
    (_P.HOLDING, _I.RECOVERED): _P.ANSWERING,
    (_P.ANSWERING, _I.SUBMITTED): _P.CONTINUING,
    (_P.ANSWERING, _I.CLOSED): _P.ENDED,
    (_P.CONTINUING, _I.FIRST_EVENT): _P.STREAMING,
    (_P.CONTINUING, _I.SEGMENT_END): _P.ENDED,
    (_P.CONTINUING, _I.REFUSED): _P.ENDED,
    (_P.CONTINUING, _I.STREAM_FAILED): _P.RECOVERING,
    (_P.RECOVERING, _I.ACTION_HELD): _P.HOLDING,
    (_P.RECOVERING, _I.RECOVERED): _P.ENDED,
    (_P.RECOVERING, _I.GAVE_UP): _P.FAILED,
}
"""(phase, input) -> next phase. Pairs not listed are refused."""

FINAL_PHASES: Final = frozenset({Phase.ENDED, Phase.START_FAILED, Phase.FAILED})


class LifecycleError(RuntimeError):
    """An input the current phase does not accept: a relay path the table does not describe."""


class Lifecycle:
    """One relay's phase; :meth:`feed` moves it by :data:`TRANSITIONS`."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.OPENING

    def feed(self, event: Input) -> Phase:
        nxt = TRANSITIONS.get((self.phase, event))
        if nxt is None:
            raise LifecycleError(f"{event.value} is not expected while {self.phase.value}")
        self.phase = nxt
        return nxt

    @property
    def published(self) -> bool:
        """Whether the upstream's events have reached the channels (any segment started)."""
        return self.phase not in (Phase.OPENING, Phase.START_FAILED)

    @property
    def broken(self) -> bool:
        """A stream failed and the run's end is not (yet) known."""
        return self.phase in (Phase.START_FAILED, Phase.RECOVERING, Phase.FAILED)
