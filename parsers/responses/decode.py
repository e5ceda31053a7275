"""``decode_event``: one ``parsers.sse.ServerSentEvent`` of a Responses stream -> a typed event.

Dispatch is on the JSON ``type``, never on the ``event:`` line: the openai SDK does the same
(reference responses-and-chat.md §1.1) and LiteLLM-style servers send data-only frames, which
a decoder keyed on ``event:`` would drop. One msgspec Decoder of the tagged union, built at
import, reads the tag and the fields in one pass. Rules, in order:

* A payload of a known ``type`` -> its event Struct (fields other than ``type`` may be absent).
* ``[DONE]`` (exact) -> :class:`DoneEvent`. OpenAI never sends it on Responses streams; LiteLLM
  and Open Responses servers send it after the terminal event (§1.1). Tested only once the union
  decode failed, so the hot path pays nothing for it.
* A JSON object whose ``type`` is a string outside the union (a new event type, the WebSocket
  ``response.done`` ...), or empty data -> :class:`UnknownEvent` with the data bytes untouched
  and the ``sequence_number`` when it has one, so it can be relayed byte for byte.
* A JSON object without ``type`` but with ``error`` (llama.cpp's ``data: {"error": ...}``, §5)
  -> :class:`~parsers.responses.events.ErrorEvent`.
* An event of a known ``type`` that msgspec rejects for half a surrogate pair escaped on its own
  (a character split across two deltas) is decoded as the SDK decodes it, the half kept
  (``parsers._surrogates``).
* Anything else -> :class:`~parsers.errors.EventDecodeError` naming the type (and the response,
  when the bytes reveal it): invalid JSON, a known type with a field of the wrong JSON type.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, TypeAlias

import msgspec

from .._surrogates import loads_lone_surrogates
from ..errors import DECODE_ERRORS, EventDecodeError
from .events import (
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    CustomToolCallInputDeltaEvent,
    CustomToolCallInputDoneEvent,
    ErrorEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    KeepaliveEvent,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    OutputTextAnnotationAddedEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ReasoningSummaryPartAddedEvent,
    ReasoningSummaryPartDoneEvent,
    ReasoningSummaryTextDeltaEvent,
    ReasoningSummaryTextDoneEvent,
    ReasoningTextDeltaEvent,
    ReasoningTextDoneEvent,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseQueuedEvent,
)
from .tool_events import (
    AudioDeltaEvent,
    AudioDoneEvent,
    AudioTranscriptDeltaEvent,
    AudioTranscriptDoneEvent,
    CodeInterpreterCallCodeDeltaEvent,
    CodeInterpreterCallCodeDoneEvent,
    CodeInterpreterCallCompletedEvent,
    CodeInterpreterCallInProgressEvent,
    CodeInterpreterCallInterpretingEvent,
    CompactionCompactingEvent,
    FileSearchCallCompletedEvent,
    FileSearchCallInProgressEvent,
    FileSearchCallSearchingEvent,
    ImageGenerationCallCompletedEvent,
    ImageGenerationCallGeneratingEvent,
    ImageGenerationCallInProgressEvent,
    ImageGenerationCallPartialImageEvent,
    McpCallArgumentsDeltaEvent,
    McpCallArgumentsDoneEvent,
    McpCallCompletedEvent,
    McpCallFailedEvent,
    McpCallInProgressEvent,
    McpListToolsCompletedEvent,
    McpListToolsFailedEvent,
    McpListToolsInProgressEvent,
    ShellCallCommandAddedEvent,
    ShellCallCommandDeltaEvent,
    ShellCallCommandDoneEvent,
    ShellCallOutputContentDeltaEvent,
    ShellCallOutputContentDoneEvent,
    WebSearchCallCompletedEvent,
    WebSearchCallInProgressEvent,
    WebSearchCallSearchingEvent,
)

__all__ = [
    "KNOWN_EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "DoneEvent",
    "EventSource",
    "ResponseStreamEvent",
    "TypedEvent",
    "UnknownEvent",
    "decode_event",
]


class EventSource(Protocol):
    """What :func:`decode_event` reads from a ``parsers.sse.ServerSentEvent``."""

    @property
    def data_bytes(self) -> bytes: ...


class DoneEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``data: [DONE]``: the end of this HTTP stream (sent by some servers after the terminal
    event, never by OpenAI)."""

    type: str = "[DONE]"
    sequence_number: None = None


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event whose ``type`` this version does not know (or empty data): ``data`` is the
    payload exactly as received; ``type`` and ``sequence_number`` are read from it when they
    are there."""

    type: str
    data: bytes
    sequence_number: int | None = None


TypedEvent: TypeAlias = (
    ResponseCreatedEvent
    | ResponseQueuedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseFailedEvent
    | ResponseIncompleteEvent
    | ErrorEvent
    | KeepaliveEvent
    | OutputItemAddedEvent
    | OutputItemDoneEvent
    | ContentPartAddedEvent
    | ContentPartDoneEvent
    | OutputTextDeltaEvent
    | OutputTextDoneEvent
    | OutputTextAnnotationAddedEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | FunctionCallArgumentsDeltaEvent
    | FunctionCallArgumentsDoneEvent
    | CustomToolCallInputDeltaEvent
    | CustomToolCallInputDoneEvent
    | ReasoningSummaryPartAddedEvent
    | ReasoningSummaryPartDoneEvent
    | ReasoningSummaryTextDeltaEvent
    | ReasoningSummaryTextDoneEvent
    | ReasoningTextDeltaEvent
    | ReasoningTextDoneEvent
    | WebSearchCallInProgressEvent
    | WebSearchCallSearchingEvent
    | WebSearchCallCompletedEvent
    | FileSearchCallInProgressEvent
    | FileSearchCallSearchingEvent
    | FileSearchCallCompletedEvent
    | CodeInterpreterCallInProgressEvent
    | CodeInterpreterCallInterpretingEvent
    | CodeInterpreterCallCompletedEvent
    | CodeInterpreterCallCodeDeltaEvent
    | CodeInterpreterCallCodeDoneEvent
    | ImageGenerationCallInProgressEvent
    | ImageGenerationCallGeneratingEvent
    | ImageGenerationCallPartialImageEvent
    | ImageGenerationCallCompletedEvent
    | McpListToolsInProgressEvent
    | McpListToolsCompletedEvent
    | McpListToolsFailedEvent
    | McpCallInProgressEvent
    | McpCallCompletedEvent
    | McpCallFailedEvent
    | McpCallArgumentsDeltaEvent
    | McpCallArgumentsDoneEvent
    | ShellCallCommandAddedEvent
    | ShellCallCommandDeltaEvent
    | ShellCallCommandDoneEvent
    | ShellCallOutputContentDeltaEvent
    | ShellCallOutputContentDoneEvent
    | AudioDeltaEvent
    | AudioDoneEvent
    | AudioTranscriptDeltaEvent
    | AudioTranscriptDoneEvent
    | CompactionCompactingEvent
)
"""Every event decoded from the tagged union: the SDK's ``ResponseStreamEvent`` + keepalive."""

ResponseStreamEvent: TypeAlias = TypedEvent | DoneEvent | UnknownEvent
"""What :func:`decode_event` returns."""

_decode: Final = msgspec.json.Decoder(TypedEvent).decode
_decode_error: Final = msgspec.json.Decoder(ErrorEvent).decode

KNOWN_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    cls.__struct_config__.tag for cls in TypedEvent.__args__
)
"""Every ``type`` decoded to a typed event (the 59 of the SDK union, and ``keepalive``)."""

TERMINAL_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"response.completed", "response.failed", "response.incomplete"}
)
"""Exactly one of these ends a response (§1.4); ``error`` may precede ``response.failed``."""


class _View(msgspec.Struct, gc=False):
    """The keys that classify a payload the union rejected."""

    type: Any = None
    sequence_number: Any = None
    error: Any = None
    response: Any = None


def decode_event(sse: EventSource) -> ResponseStreamEvent:
    """Turn one SSE event into a typed Responses event (rules in the module docstring)."""
    try:
        return _decode(sse.data_bytes)
    except msgspec.ValidationError as exc:
        return _rejected(sse.data_bytes, exc)
    except DECODE_ERRORS as exc:
        if not sse.data_bytes.strip():
            return UnknownEvent(type="", data=sse.data_bytes)
        return _with_lone_surrogates(sse.data_bytes, exc)


def _with_lone_surrogates(data: bytes, exc: Exception) -> TypedEvent:
    value = loads_lone_surrogates(data)
    if value is None:
        raise EventDecodeError("?", str(exc)) from exc
    try:
        event: TypedEvent = msgspec.convert(value, TypedEvent)
    except msgspec.ValidationError as invalid:
        kind = value.get("type") if isinstance(value, dict) else None
        raise EventDecodeError(kind if isinstance(kind, str) else "?", str(invalid)) from invalid
    return event


def _rejected(data: bytes, exc: msgspec.ValidationError) -> ResponseStreamEvent:
    if data == b"[DONE]":
        return DoneEvent()
    try:
        view = msgspec.json.decode(data, type=_View)
    except DECODE_ERRORS:
        raise EventDecodeError("?", str(exc)) from exc
    kind = view.type
    seq = view.sequence_number if type(view.sequence_number) is int else None
    if kind is None and view.error is not None:
        try:
            return _decode_error(data)
        except DECODE_ERRORS as inner:
            raise EventDecodeError("error", str(inner)) from inner
    if isinstance(kind, str) and kind not in KNOWN_EVENT_TYPES:
        return UnknownEvent(type=kind, data=data, sequence_number=seq)
    name = kind if isinstance(kind, str) else "?"
    raise EventDecodeError(name, str(exc), run_id=_response_id(view)) from exc


def _response_id(view: _View) -> str | None:
    response = view.response
    if isinstance(response, dict):
        rid = response.get("id")
        return rid if isinstance(rid, str) else None
    return None
