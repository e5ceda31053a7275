"""Chat Completions (``POST /v1/chat/completions`` with ``"stream": true``) behind the seam.

:data:`CHAT` types each frame with ``parsers.chat``: the id is the first chunk's ``id``, the last
word is ``[DONE]`` (a stream cut before it is lost, never retried: a retry regenerates and bills
again), and chunks carry no cursor. Some servers end a complete stream without it (TGI before
2.1; llama.cpp, whose last line ``data: [DONE]`` has no blank line after it, so it is never
dispatched): a body that ends once every choice it carried has its ``finish_reason`` is
complete, and runcast publishes the ``[DONE]`` it lacked. :class:`ChatReducer` folds the chunks into a
``chat.completion``-shaped snapshot: one completion, or with ``latest`` a channel's latest.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.hub import HubEvent
from parsers.chat import (
    ChatAccumulator,
    ChatCompletionChunk,
    ChatDoneEvent,
    ChatErrorEvent,
    ChatStreamEvent,
    decode_chunk,
)
from parsers.errors import EventDecodeError
from parsers.sse import ServerSentEvent

from ..channels import chat_channel
from . import chat_creator
from .lost import UPSTREAM_LOST_EVENT, ended_by_loss
from .sizing import StateSize
from .spec import Seen

__all__ = ["CHAT", "ChatReducer", "ChatSpec", "typed_chat_event"]

_DONE = Seen(end=True, closes=True)
_DONE_EVENT = HubEvent("message", b"[DONE]", ChatDoneEvent())
_NOTHING = Seen()
_INDICES = tuple((index,) for index in range(8))
"""The tuple of one choice index, built once: most chunks carry one choice, most often 0."""
_CHAT_TYPES = (ChatCompletionChunk, ChatDoneEvent, ChatErrorEvent)
_encode = msgspec.json.Encoder().encode


class ChatSpec:
    """The Chat Completions protocol as the stream pump sees it."""

    kind = "chat"

    def decode(self, sse: ServerSentEvent) -> tuple[object | None, Seen]:
        try:
            event = decode_chunk(sse)
        except EventDecodeError:
            return None, _NOTHING
        if type(event) is ChatCompletionChunk:
            parts, finished = _choices(event)
            return event, Seen(object_id=event.id or None, parts=parts, finished=finished)
        if type(event) is ChatDoneEvent:
            return event, _DONE
        if isinstance(event, ChatErrorEvent):
            return event, Seen(said=event.error.message or None)
        return event, _NOTHING

    def channel(self, object_id: str) -> str:
        return chat_channel(object_id)

    def resume(self, object_id: str, cursor: int) -> None:
        return None  # a retry would regenerate the answer and bill it again

    def last_word(self) -> HubEvent:
        return _DONE_EVENT

    def calls_tools(self, typed: object) -> bool:
        return type(typed) is ChatCompletionChunk and any(
            choice.delta.tool_calls for choice in typed.choices
        )

    def said_with_calls(self, event: HubEvent) -> tuple[HubEvent, HubEvent] | None:
        return chat_creator.said_with_calls(event)

    def names(self, event: HubEvent) -> bool:
        return chat_creator.names(event)

    def continued(self, event: HubEvent) -> HubEvent:
        return chat_creator.without_role(event)

    def usage(self, event: HubEvent) -> dict[str, Any] | None:
        return chat_creator.usage(event)

    def with_usage(self, event: HubEvent, usage: dict[str, Any]) -> HubEvent:
        return chat_creator.with_usage(event, usage)


CHAT = ChatSpec()


def _choices(chunk: ChatCompletionChunk) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The chunk's choice indices, and those it finishes."""
    choices = chunk.choices
    if len(choices) == 1:
        index = choices[0].index
        one = _INDICES[index] if 0 <= index < len(_INDICES) else (index,)
        return one, one if choices[0].finish_reason else ()
    indices = tuple(choice.index for choice in choices)
    return indices, tuple(choice.index for choice in choices if choice.finish_reason)


def typed_chat_event(event: HubEvent) -> ChatStreamEvent | None:
    """The chat event a hub event carries (the relay's own typed one when in process)."""
    if event.name.startswith("runcast."):
        return None
    decoded = event.decoded
    if decoded is not None:
        return decoded if isinstance(decoded, _CHAT_TYPES) else None
    try:
        return decode_chunk(ServerSentEvent(event=event.name, data_bytes=event.data))
    except EventDecodeError:
        return None


class ChatReducer:
    """The snapshot of a chat channel: its completion, or with ``latest`` the latest completion
    published to it, started afresh by a chunk with choices and a new id once the current one
    has finished (a ``finish_reason`` or ``[DONE]``): servers that give every chunk an id of its
    own (older llama.cpp servers, some LiteLLM versions) still make one completion, and a usage
    chunk after the finish belongs to the completion it ends."""

    __slots__ = ("_acc", "_finished", "_id", "_latest", "_lost", "_size")

    def __init__(self, *, latest: bool = False) -> None:
        self._acc = ChatAccumulator()
        self._latest = latest
        self._id: str | None = None
        self._finished = False
        self._lost: HubEvent | None = None
        self._size = StateSize()

    def apply(self, event: HubEvent) -> None:
        if event.name == UPSTREAM_LOST_EVENT:
            self._lost = event
            return
        typed = typed_chat_event(event)
        if typed is None:
            return
        if self._latest:
            self._follow(typed)
        self._acc.apply(typed)
        self._size.fold(len(event.data))

    def _follow(self, typed: ChatStreamEvent) -> None:
        """Start afresh at a new completion's first chunk (``latest``)."""
        if type(typed) is ChatDoneEvent:
            self._finished = True
        elif type(typed) is ChatCompletionChunk:
            if typed.id and typed.id != self._id and typed.choices:
                if self._id is not None and self._finished:
                    self._acc = ChatAccumulator()
                    self._lost = None
                    self._size.reset()
                    self._finished = False
                self._id = typed.id
            if any(choice.finish_reason for choice in typed.choices):
                self._finished = True

    @property
    def nbytes(self) -> int:
        """What the state holds, for the memory budget (``sizing.py``)."""
        return self._size.value(lambda: len(self.snapshot()))

    def snapshot(self) -> bytes:
        snapshot = self._acc.snapshot()
        if self._lost is not None:
            snapshot = ended_by_loss(snapshot, self._lost)
        return _encode(snapshot)
