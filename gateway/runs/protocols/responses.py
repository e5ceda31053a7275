"""The Responses API (``POST /v1/responses`` with ``"stream": true``) behind the stream seam.

:data:`RESPONSES` types each event with ``parsers.responses`` (dispatch on the JSON ``type``,
unknown types and ``keepalive`` passed through byte for byte): the id comes from the first event
carrying the ``response`` object (``response.created``), the last word is
``response.completed|failed|incomplete`` (a LiteLLM-style ``[DONE]`` after it ends the HTTP
stream; one before it is a cut), the cursor is
``sequence_number``; a background response cut mid-stream is resumed with
``GET /responses/{id}?stream=true&starting_after=<last sequence_number>``. :func:`conversation_of` reads the creating request's ``conversation``
(an id, or an object with one), whose channel gets every response of the conversation.
:class:`ResponseReducer` serves the snapshots: one response, or a conversation's latest.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

import msgspec

from gateway.hub import HubEvent
from parsers.errors import DECODE_ERRORS, EventDecodeError
from parsers.responses import (
    TERMINAL_EVENT_TYPES,
    DoneEvent,
    ErrorEvent,
    KeepaliveEvent,
    ResponseAccumulator,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseQueuedEvent,
    ResponseStreamEvent,
    decode_event,
)
from parsers.sse import ServerSentEvent

from ..channels import response_channel
from .lost import UPSTREAM_LOST_EVENT, ended_by_loss
from .sizing import StateSize
from .spec import Seen

__all__ = [
    "RESPONSES",
    "ResponseReducer",
    "ResponsesSpec",
    "conversation_of",
    "typed_response_event",
]

_LIFECYCLE = (ResponseCreatedEvent, ResponseQueuedEvent, ResponseInProgressEvent)
_TERMINAL = (ResponseCompletedEvent, ResponseFailedEvent, ResponseIncompleteEvent)
_DONE = Seen(closes=True)  # the end of the HTTP stream; the terminal event is the last word
_encode = msgspec.json.Encoder().encode


class ResponsesSpec:
    """The Responses protocol as the stream pump sees it."""

    kind = "response"

    def decode(self, sse: ServerSentEvent) -> tuple[object | None, Seen]:
        try:
            event = decode_event(sse)
        except EventDecodeError:
            return None, Seen()
        if type(event) is DoneEvent:
            return event, _DONE
        seq = event.sequence_number
        if isinstance(event, _LIFECYCLE) and event.response.id:
            resumable = event.response.background is True
            rid = event.response.id
            return event, Seen(object_id=rid, cursor=seq, resumable=resumable, about=rid)
        if isinstance(event, _TERMINAL):
            return event, Seen(end=True, cursor=seq, about=event.response.id or None)
        if isinstance(event, ErrorEvent):
            return event, Seen(cursor=seq, said=event.details().message or None, idle=True)
        if type(event) is KeepaliveEvent:
            return event, Seen(cursor=seq, idle=True)
        return event, Seen(end=event.type in TERMINAL_EVENT_TYPES, cursor=seq)

    def channel(self, object_id: str) -> str:
        return response_channel(object_id)

    def resume(self, object_id: str, cursor: int) -> tuple[str, str]:
        return f"/responses/{quote(object_id, safe='')}", f"stream=true&starting_after={cursor}"

    def last_word(self) -> None:
        return None  # a response's last word is its terminal event, which no part replaces

    def calls_tools(self, typed: object) -> bool:
        return False  # each response of a chain is its own object, with its own ids

    def said_with_calls(self, event: HubEvent) -> tuple[HubEvent, HubEvent] | None:
        return None  # never turns

    def names(self, event: HubEvent) -> bool:
        return False  # each response names its own items' roles

    def continued(self, event: HubEvent) -> HubEvent:
        return event  # the creator gets every response of the chain whole

    def usage(self, event: HubEvent) -> dict[str, Any] | None:
        return None  # each response of a chain carries its own, and the creator gets each one

    def with_usage(self, event: HubEvent, usage: dict[str, Any]) -> HubEvent:
        return event


RESPONSES = ResponsesSpec()


class _ConversationView(msgspec.Struct):
    # A view of the creating request: every other member is ignored (and sent upstream as is).
    conversation: str | dict[str, Any] | None = None


_view = msgspec.json.Decoder(_ConversationView)


def conversation_of(body: bytes) -> str | None:
    """The conversation id a creating request names, or None."""
    try:
        conversation = _view.decode(body).conversation
    except DECODE_ERRORS:
        return None
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    return conversation if isinstance(conversation, str) and conversation else None


def typed_response_event(event: HubEvent) -> ResponseStreamEvent | None:
    """The Responses event a hub event carries (the relay's own typed one when in process)."""
    if event.name.startswith("runcast."):
        return None
    decoded = event.decoded
    if decoded is not None:
        # Every Responses event has a `sequence_number` member (None for [DONE]); chunks do not.
        return cast("ResponseStreamEvent", decoded) if hasattr(decoded, "sequence_number") else None
    try:
        return decode_event(ServerSentEvent(event=event.name, data_bytes=event.data))
    except EventDecodeError:
        return None


class ResponseReducer:
    """The snapshot of a Responses channel: its response, or with ``latest`` the latest response
    published to it (a conversation's), started afresh by each new response's first event."""

    __slots__ = ("_acc", "_id", "_latest", "_lost", "_size")

    def __init__(self, *, latest: bool = False) -> None:
        self._acc = ResponseAccumulator()
        self._latest = latest
        self._id: str | None = None
        self._lost: HubEvent | None = None
        self._size = StateSize()

    def apply(self, event: HubEvent) -> None:
        if event.name == UPSTREAM_LOST_EVENT:
            self._lost = event
            return
        typed = typed_response_event(event)
        if typed is None:
            return
        if self._latest and isinstance(typed, _LIFECYCLE) and typed.response.id != self._id:
            if self._id is not None:
                self._acc = ResponseAccumulator()
                self._lost = None
                self._size.reset()
            self._id = typed.response.id
        self._acc.apply(typed)
        # An upper bound of what the accumulator holds: the payloads it folded.
        self._size.fold(len(event.data))

    @property
    def nbytes(self) -> int:
        """What the state holds, for the memory budget (``sizing.py``)."""
        return self._size.value(lambda: len(self.snapshot()))

    def snapshot(self) -> bytes:
        snapshot = self._acc.snapshot()
        if self._lost is not None:
            snapshot = ended_by_loss(snapshot, self._lost)
        return _encode(snapshot)
