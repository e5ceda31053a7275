"""Typed Assistants stream events and :func:`decode_event`, the SSE event -> typed event step.

The payload type of an event is named only by its SSE ``event:`` line (spec §2.1, §3), so
decoding is a lookup in tables built once at import: event name -> (msgspec Decoder, event
Struct), plus a tolerant fallback per name. Rules, in order:

* ``data == "[DONE]"`` (exact, spec Appendix C; under any event name) or ``event: done`` ->
  :class:`DoneEvent`, before any JSON work.
* A name outside the table -> :class:`UnknownEvent` carrying the raw bytes; the spec says new
  event types may be added (§3), so this is never an error.
* Empty (or blank) ``data`` under a known name -> :class:`UnknownEvent` with empty bytes. It has
  no payload to type; servers with ``id:`` lines or ``event: ping`` produce such events (§6.1)
  and Appendix C says to skip them. The caller passes it through or drops it; it never raises.
* Known name whose JSON names an unknown union member -> decoded through the tolerant fallback
  (``_tolerant``); the member becomes ``UnknownVariant``.
* Anything else that does not decode -> :class:`~parsers.errors.EventDecodeError` naming the
  event (and the run, when the bytes reveal it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol, TypeAlias

import msgspec

from ..errors import DECODE_ERRORS, EventDecodeError
from ._tolerant import TolerantDecoder
from .error_object import ErrorEnvelope, ErrorObject
from .messages import Message, MessageDelta
from .run import Run
from .steps import RunStep, RunStepDelta
from .thread import Thread

__all__ = [
    "KNOWN_EVENTS",
    "TERMINAL_RUN_STATUSES",
    "AssistantStreamEvent",
    "DoneEvent",
    "ErrorEvent",
    "EventSource",
    "MessageDeltaEvent",
    "MessageEvent",
    "RunEvent",
    "RunStepDeltaEvent",
    "RunStepEvent",
    "ThreadEvent",
    "UnknownEvent",
    "decode_event",
]

TERMINAL_RUN_STATUSES: Final[frozenset[str]] = frozenset(
    {"completed", "incomplete", "failed", "cancelled", "expired"}
)
"""Run statuses after which the run never changes again (spec §5)."""


class EventSource(Protocol):
    """What :func:`decode_event` reads from a ``parsers.sse.ServerSentEvent``."""

    @property
    def event(self) -> str: ...

    @property
    def data_bytes(self) -> bytes: ...

    @property
    def data(self) -> str: ...


class ThreadEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: Thread


class RunEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: Run


class RunStepEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: RunStep


class RunStepDeltaEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: RunStepDelta


class MessageEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: Message


class MessageDeltaEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: str
    data: MessageDelta


class ErrorEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``event: error``; ``data`` is the Error object whether it came bare or wrapped (§2.4)."""

    event: str
    data: ErrorObject


class DoneEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """End of this HTTP stream (``data: [DONE]``, not JSON). Not the end of the run (§2.1)."""

    event: str = "done"
    data: str = "[DONE]"


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event name this version does not know, or a known name with empty data; raw bytes kept."""

    event: str
    data: bytes


AssistantStreamEvent: TypeAlias = (
    ThreadEvent
    | RunEvent
    | RunStepEvent
    | RunStepDeltaEvent
    | MessageEvent
    | MessageDeltaEvent
    | ErrorEvent
    | DoneEvent
    | UnknownEvent
)

_RUN_EVENTS = (
    "created",
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "completed",
    "incomplete",
    "failed",
    "cancelled",
    "expired",
)
_STEP_EVENTS = ("created", "in_progress", "completed", "failed", "cancelled", "expired")
_MESSAGE_EVENTS = ("created", "in_progress", "completed", "incomplete")

_Decode: TypeAlias = Callable[[bytes], Any]
_Wrap: TypeAlias = Callable[..., AssistantStreamEvent]
# (decode, wrap): a tuple rather than a closure doing both saves a Python call per event
# (~25 ns of a ~200 ns dispatch overhead, measured by bench/parse_bench.py).
_Route: TypeAlias = tuple[_Decode, _Wrap]


def _decode_error(decode: Callable[[bytes], ErrorEnvelope]) -> Callable[[bytes], ErrorObject]:
    def decode_error(data: bytes) -> ErrorObject:
        return decode(data).unwrap()

    return decode_error


def _build_routes() -> dict[str, tuple[_Route, _Route]]:
    """Event name -> (fast route, tolerant fallback route)."""

    def route(type_: type[Any], wrap: _Wrap) -> tuple[_Route, _Route]:
        return (msgspec.json.Decoder(type_).decode, wrap), (TolerantDecoder(type_).decode, wrap)

    run = route(Run, RunEvent)
    step = route(RunStep, RunStepEvent)
    message = route(Message, MessageEvent)
    error: _Route = (_decode_error(msgspec.json.Decoder(ErrorEnvelope).decode), ErrorEvent)
    routes = {
        "thread.created": route(Thread, ThreadEvent),
        "thread.run.step.delta": route(RunStepDelta, RunStepDeltaEvent),
        "thread.message.delta": route(MessageDelta, MessageDeltaEvent),
        "error": (error, error),
    }
    routes.update((f"thread.run.{name}", run) for name in _RUN_EVENTS)
    routes.update((f"thread.run.step.{name}", step) for name in _STEP_EVENTS)
    routes.update((f"thread.message.{name}", message) for name in _MESSAGE_EVENTS)
    return routes


_routes = _build_routes()
# Only bound lookup methods of the tables are kept: read-only, and as fast as a plain dict
# lookup on the hot path (a MappingProxyType lookup costs ~20 ns more per event).
_fast_route: Final[Callable[[str], _Route | None]] = {k: v[0] for k, v in _routes.items()}.get
_fallback_route: Final[Callable[[str], _Route]] = {k: v[1] for k, v in _routes.items()}.__getitem__

KNOWN_EVENTS: Final[frozenset[str]] = frozenset({*_routes, "done"})
"""Every event name of spec §3."""
del _routes


class _RunRef(msgspec.Struct):
    """View of the keys that locate a payload's run, for error messages only."""

    object: Any = None
    id: Any = None
    run_id: Any = None


def _run_id_of(data: bytes) -> str | None:
    try:
        ref = msgspec.json.decode(data, type=_RunRef)
    except DECODE_ERRORS:
        return None
    run_id = ref.id if ref.object == "thread.run" else ref.run_id
    return run_id if isinstance(run_id, str) else None


def decode_event(sse: EventSource) -> AssistantStreamEvent:
    """Turn one SSE event into a typed Assistants event (rules in the module docstring)."""
    name = sse.event
    data = sse.data_bytes
    if data == b"[DONE]":
        return DoneEvent(event=name, data="[DONE]")
    route = _fast_route(name)
    if route is None:
        # "done" is not a route, so the hot path pays for one [DONE] test only.
        if name == "done":
            return DoneEvent(event=name, data=sse.data)
        return UnknownEvent(event=name, data=data)
    decode, wrap = route
    try:
        return wrap(event=name, data=decode(data))
    except msgspec.ValidationError:
        return _decode_tolerant(name, data)
    except DECODE_ERRORS as exc:
        if not data.strip():
            return UnknownEvent(event=name, data=b"")
        raise EventDecodeError(name, str(exc), run_id=_run_id_of(data)) from exc


def _decode_tolerant(name: str, data: bytes) -> AssistantStreamEvent:
    decode, wrap = _fallback_route(name)
    try:
        payload = decode(data)
    except DECODE_ERRORS as exc:
        raise EventDecodeError(name, str(exc), run_id=_run_id_of(data)) from exc
    return wrap(event=name, data=payload)
