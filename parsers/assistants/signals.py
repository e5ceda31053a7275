"""The Assistants run stream as signals (``parsers.signals``): the one place that matches its
event types to decide run state, ids, final items and the end of a stream.

``SETTLED_STATUSES`` are the statuses a run waits in or ends with: a stream may end cleanly
after one (spec §2.3, §5), and a recovery polls until it sees one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from parsers.signals import Empty, GroupSeen, ItemFinal, RunSeen, Signal, StreamEnd, StreamError

from .events import (
    TERMINAL_RUN_STATUSES,
    AssistantStreamEvent,
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    RunEvent,
    RunStepEvent,
    ThreadEvent,
    UnknownEvent,
)
from .run import Run

__all__ = [
    "ACTION_STATUS",
    "FINAL_MESSAGE_STATUSES",
    "FINAL_STEP_STATUSES",
    "SETTLED_STATUSES",
    "signal",
]

ACTION_STATUS: Final = "requires_action"
"""The status of a run waiting for tool outputs (spec §5)."""

SETTLED_STATUSES: Final[frozenset[str]] = TERMINAL_RUN_STATUSES | {ACTION_STATUS}

FINAL_MESSAGE_STATUSES: Final[frozenset[str]] = frozenset({"completed", "incomplete"})
FINAL_STEP_STATUSES: Final[frozenset[str]] = frozenset(
    {"completed", "failed", "cancelled", "expired"}
)


def _run(event: RunEvent) -> Signal[Run] | None:
    run = event.data
    return RunSeen(run_id=run.id, group_id=run.thread_id, status=run.status, run=run)


def _message(event: MessageEvent) -> Signal[Run] | None:
    if event.data.status in FINAL_MESSAGE_STATUSES:
        return ItemFinal(kind="message", id=event.data.id)
    return None


def _step(event: RunStepEvent) -> Signal[Run] | None:
    if event.data.status in FINAL_STEP_STATUSES:
        return ItemFinal(kind="step", id=event.data.id)
    return None


def _thread(event: ThreadEvent) -> Signal[Run] | None:
    return GroupSeen(group_id=event.data.id)


def _done(event: DoneEvent) -> Signal[Run] | None:
    return _STREAM_END


def _error(event: ErrorEvent) -> Signal[Run] | None:
    return _STREAM_ERROR


def _unknown(event: UnknownEvent) -> Signal[Run] | None:
    return None if event.data else _EMPTY


_STREAM_END: Final = StreamEnd()
_STREAM_ERROR: Final = StreamError()
_EMPTY: Final = Empty()

# One dict lookup per event: deltas, the bulk of a stream, find no entry. Read-only.
_BY_TYPE: Final[Mapping[type, Callable[[Any], Signal[Run] | None]]] = MappingProxyType(
    {
        RunEvent: _run,
        MessageEvent: _message,
        RunStepEvent: _step,
        ThreadEvent: _thread,
        DoneEvent: _done,
        ErrorEvent: _error,
        UnknownEvent: _unknown,
    }
)


def signal(event: AssistantStreamEvent) -> Signal[Run] | None:
    """What ``event`` means to the gateway; None when it only carries content."""
    fn = _BY_TYPE.get(type(event))
    return None if fn is None else fn(event)
