"""The ``runcast.*`` events tool automation adds to a run's or a stream's subscriber channels.

Each builder returns ``(event name, JSON data bytes)``, ready to publish next to the upstream
events. The payload starts with the ids of what the calls belong to (its *owner*): ``run_id`` and
``thread_id`` for an Assistants run, ``response_id`` (the response whose ``function_call`` items
are answered) for a Responses stream, ``completion_id`` for a Chat Completions stream; in what
follows, ``{owner}`` stands for them. Names and payloads::

    runcast.tool_call.started    {owner, "tool_call_id", "name"}
    runcast.tool_call.completed  {... , "duration_ms"}
    runcast.tool_call.failed     {... , "duration_ms", "error"}
    runcast.tool_automation.cancelled   {owner, "reason"}
    runcast.tool_automation.superseded  {"run_id", "thread_id", "reason"}
    runcast.tool_automation.rejected    {"run_id", "thread_id", "reason", "status"}
    runcast.tool_automation.skipped     {owner, "reason", "calls": [{"tool_call_id", "name"}]}

``tool_call_id`` is the call's id: Assistants' ``tool_calls[].id``, a Responses
``function_call``'s ``call_id``, a chat ``tool_calls[].id``.

``duration_ms`` is the handler's wall time in milliseconds (0 for calls that never reached a
handler: invalid arguments, no handler). ``cancelled`` says why runcast is cancelling the run
(handler failure with ``on_error=cancel``, round limit, deadline). ``superseded``: a client
submitted the outputs itself (through runcast) while runcast was answering, so runcast stopped
and did not submit. ``rejected``: the upstream refused runcast's submission (``status`` is its
HTTP status, ``reason`` its message), typically because the run no longer waits for outputs.
``skipped`` (Responses and Chat streams): runcast did not answer these calls (some have no
handler, or the chain cannot be continued), so the stream ends as the upstream gave it and they
are left to the application. On a Responses or Chat stream ``cancelled`` means runcast stopped
answering (round limit, a failed handler with ``on_error=cancel``): nothing is cancelled upstream,
the stream ends as the upstream gave it.

The creator's OpenAI-format response gets these events only when asked for, and then through
:func:`creator_view`: the openai SDK raises on any non-``thread.*`` event whose data has a truthy
``error`` member (spec §6.2), so there the failure text is called ``error_message``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from parsers.errors import DECODE_ERRORS

__all__ = [
    "AUTOMATION_CANCELLED",
    "AUTOMATION_REJECTED",
    "AUTOMATION_SKIPPED",
    "AUTOMATION_SUPERSEDED",
    "TOOL_CALL_COMPLETED",
    "TOOL_CALL_FAILED",
    "TOOL_CALL_STARTED",
    "AutomationCancelled",
    "AutomationRejected",
    "Emit",
    "ToolCallEvent",
    "automation_cancelled",
    "automation_rejected",
    "automation_skipped",
    "automation_superseded",
    "creator_view",
    "publish",
    "tool_call_completed",
    "tool_call_failed",
    "tool_call_started",
]

TOOL_CALL_STARTED = "runcast.tool_call.started"
TOOL_CALL_COMPLETED = "runcast.tool_call.completed"
TOOL_CALL_FAILED = "runcast.tool_call.failed"
AUTOMATION_CANCELLED = "runcast.tool_automation.cancelled"
AUTOMATION_SUPERSEDED = "runcast.tool_automation.superseded"
AUTOMATION_REJECTED = "runcast.tool_automation.rejected"
AUTOMATION_SKIPPED = "runcast.tool_automation.skipped"


class ToolCallEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A ``runcast.tool_call.*`` payload, as its readers decode it (one of the owners is set)."""

    run_id: str | None = None
    thread_id: str | None = None
    response_id: str | None = None
    completion_id: str | None = None
    tool_call_id: str
    name: str
    duration_ms: float | None = None
    error: str | None = None


class AutomationCancelled(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str
    reason: str


class AutomationRejected(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str
    reason: str
    status: int


_encode = msgspec.json.Encoder().encode
_decode_object = msgspec.json.Decoder(dict[str, object]).decode

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


def tool_call_started(*, tool_call_id: str, name: str, **owner: str) -> tuple[str, bytes]:
    """``owner``: ``run_id`` and ``thread_id``, or ``response_id``, or ``completion_id``."""
    return TOOL_CALL_STARTED, _encode({**owner, "tool_call_id": tool_call_id, "name": name})


def tool_call_completed(
    *, tool_call_id: str, name: str, duration_ms: float, **owner: str
) -> tuple[str, bytes]:
    payload = {**owner, "tool_call_id": tool_call_id, "name": name}
    return TOOL_CALL_COMPLETED, _encode({**payload, "duration_ms": round(duration_ms, 3)})


def tool_call_failed(
    *, tool_call_id: str, name: str, duration_ms: float, error: str, **owner: str
) -> tuple[str, bytes]:
    payload = {**owner, "tool_call_id": tool_call_id, "name": name}
    return TOOL_CALL_FAILED, _encode(
        {**payload, "duration_ms": round(duration_ms, 3), "error": error}
    )


def automation_cancelled(*, reason: str, **owner: str) -> tuple[str, bytes]:
    return AUTOMATION_CANCELLED, _encode({**owner, "reason": reason})


def automation_skipped(
    *, reason: str, calls: Sequence[tuple[str, str]], **owner: str
) -> tuple[str, bytes]:
    """``calls``: (tool_call_id, name) of every call left to the application."""
    listed = [{"tool_call_id": call_id, "name": name} for call_id, name in calls]
    return AUTOMATION_SKIPPED, _encode({**owner, "reason": reason, "calls": listed})


def automation_superseded(*, run_id: str, thread_id: str, reason: str) -> tuple[str, bytes]:
    return AUTOMATION_SUPERSEDED, _encode(
        AutomationCancelled(run_id=run_id, thread_id=thread_id, reason=reason)
    )


def automation_rejected(
    *, run_id: str, thread_id: str, reason: str, status: int
) -> tuple[str, bytes]:
    return AUTOMATION_REJECTED, _encode(
        AutomationRejected(run_id=run_id, thread_id=thread_id, reason=reason, status=status)
    )


def creator_view(data: bytes) -> bytes:
    """``data`` as the creator's response carries it: a top-level ``error`` becomes
    ``error_message`` (module docstring: the openai SDK would raise on it)."""
    if b'"error"' not in data:
        return data
    try:
        document = _decode_object(data)
    except DECODE_ERRORS:
        return data
    if "error" not in document:
        return data
    renamed = {
        ("error_message" if key == "error" else key): value for key, value in document.items()
    }
    return _encode(renamed)
