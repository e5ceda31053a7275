"""The ``runcast.*`` events tool automation adds to a run's subscriber channels.

Each builder returns ``(event name, JSON data bytes)``, ready to publish next to the upstream
events. Names and payloads::

    runcast.tool_call.started    {"run_id", "thread_id", "tool_call_id", "name"}
    runcast.tool_call.completed  {... , "duration_ms"}
    runcast.tool_call.failed     {... , "duration_ms", "error"}
    runcast.tool_automation.cancelled  {"run_id", "thread_id", "reason"}

``duration_ms`` is the handler's wall time in milliseconds (0 for calls that never reached a
handler: invalid arguments, no handler). ``cancelled`` says why runcast is cancelling the run
(handler failure with ``on_error=cancel``, round limit, deadline).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

import msgspec

__all__ = [
    "AUTOMATION_CANCELLED",
    "TOOL_CALL_COMPLETED",
    "TOOL_CALL_FAILED",
    "TOOL_CALL_STARTED",
    "AutomationCancelled",
    "Emit",
    "ToolCallEvent",
    "automation_cancelled",
    "publish",
    "tool_call_completed",
    "tool_call_failed",
    "tool_call_started",
]

TOOL_CALL_STARTED = "runcast.tool_call.started"
TOOL_CALL_COMPLETED = "runcast.tool_call.completed"
TOOL_CALL_FAILED = "runcast.tool_call.failed"
AUTOMATION_CANCELLED = "runcast.tool_automation.cancelled"


class ToolCallEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    run_id: str
    thread_id: str
    tool_call_id: str
    name: str
    duration_ms: float | None = None
    error: str | None = None


class AutomationCancelled(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str
    reason: str


_encode = msgspec.json.Encoder().encode

log = logging.getLogger("runcast.tools")

Emit = Callable[[str, bytes], Awaitable[None] | None]
"""Receives each event as (name, JSON bytes); may be a plain function or a coroutine function."""


async def publish(emit: Emit | None, event: tuple[str, bytes]) -> None:
    """Hand ``event`` to ``emit``. Visibility never fails a tool call: errors are only logged."""
    if emit is None:
        return
    try:
        pending = emit(*event)
        if inspect.isawaitable(pending):
            await pending
    except Exception:
        log.exception("could not publish %s", event[0])


def tool_call_started(
    *, run_id: str, thread_id: str, tool_call_id: str, name: str
) -> tuple[str, bytes]:
    event = ToolCallEvent(run_id=run_id, thread_id=thread_id, tool_call_id=tool_call_id, name=name)
    return TOOL_CALL_STARTED, _encode(event)


def tool_call_completed(
    *, run_id: str, thread_id: str, tool_call_id: str, name: str, duration_ms: float
) -> tuple[str, bytes]:
    event = ToolCallEvent(
        run_id=run_id,
        thread_id=thread_id,
        tool_call_id=tool_call_id,
        name=name,
        duration_ms=round(duration_ms, 3),
    )
    return TOOL_CALL_COMPLETED, _encode(event)


def tool_call_failed(
    *, run_id: str, thread_id: str, tool_call_id: str, name: str, duration_ms: float, error: str
) -> tuple[str, bytes]:
    event = ToolCallEvent(
        run_id=run_id,
        thread_id=thread_id,
        tool_call_id=tool_call_id,
        name=name,
        duration_ms=round(duration_ms, 3),
        error=error,
    )
    return TOOL_CALL_FAILED, _encode(event)


def automation_cancelled(*, run_id: str, thread_id: str, reason: str) -> tuple[str, bytes]:
    return AUTOMATION_CANCELLED, _encode(
        AutomationCancelled(run_id=run_id, thread_id=thread_id, reason=reason)
    )
