"""The Assistants run stream as signals (``parsers.signals``): the one place that matches its
event types to decide run state, ids, final items and the end of a stream.

``SETTLED_STATUSES`` are the statuses a run waits in or ends with: a stream may end cleanly
after one (spec §2.3, §5), and a recovery polls until it sees one.
"""

from __future__ import annotations

from typing import Final

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


def signal(event: AssistantStreamEvent) -> Signal[Run] | None:
    """What ``event`` means to the gateway; None when it only carries content."""
    if isinstance(event, RunEvent):
        run = event.data
        return RunSeen(run_id=run.id, group_id=run.thread_id, status=run.status, run=run)
    if isinstance(event, MessageEvent):
        if event.data.status in FINAL_MESSAGE_STATUSES:
            return ItemFinal(kind="message", id=event.data.id)
        return None
    if isinstance(event, RunStepEvent):
        if event.data.status in FINAL_STEP_STATUSES:
            return ItemFinal(kind="step", id=event.data.id)
        return None
    if isinstance(event, ThreadEvent):
        return GroupSeen(group_id=event.data.id)
    if isinstance(event, DoneEvent):
        return StreamEnd()
    if isinstance(event, ErrorEvent):
        return StreamError()
    if isinstance(event, UnknownEvent) and not event.data:
        return Empty()
    return None
