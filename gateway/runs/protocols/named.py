"""The snapshot of a ``channel:{name}`` channel, which carries streams of either protocol.

A creating request's ``Runcast-Channel`` header names the channel, so one channel may carry a
Responses stream, then a chat stream: the snapshot is the latest stream's, by the protocol of its
events (the relay's typed event in process, else the payload's ``object``/``type``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.hub import HubEvent
from parsers.chat import ChatCompletionChunk, ChatDoneEvent, ChatErrorEvent
from parsers.errors import DECODE_ERRORS

from .chat import ChatReducer
from .lost import UPSTREAM_LOST_EVENT
from .responses import ResponseReducer

__all__ = ["NamedReducer"]


class _Kind(msgspec.Struct, gc=False):
    object: Any = None
    type: Any = None


_kind_decoder = msgspec.json.Decoder(_Kind)


def _kind(event: HubEvent) -> str | None:
    decoded = event.decoded
    if decoded is not None:
        chat = ChatCompletionChunk | ChatDoneEvent | ChatErrorEvent
        return "chat" if isinstance(decoded, chat) else "response"
    try:
        view = _kind_decoder.decode(event.data)
    except DECODE_ERRORS:
        return None  # [DONE] or garbage: it belongs to the current stream
    if view.object == "chat.completion.chunk":
        return "chat"
    return "response" if isinstance(view.type, str) else None


class NamedReducer:
    """The latest stream's snapshot, whichever its protocol."""

    __slots__ = ("_inner", "_kind")

    def __init__(self) -> None:
        self._kind: str | None = None
        self._inner: ChatReducer | ResponseReducer | None = None

    def apply(self, event: HubEvent) -> None:
        if event.name.startswith("runcast.") and event.name != UPSTREAM_LOST_EVENT:
            return
        kind = _kind(event)
        if kind is not None and kind != self._kind:
            self._kind = kind
            self._inner = (
                ChatReducer(latest=True) if kind == "chat" else ResponseReducer(latest=True)
            )
        if self._inner is not None:
            self._inner.apply(event)

    @property
    def nbytes(self) -> int:
        return 0 if self._inner is None else self._inner.nbytes

    def snapshot(self) -> bytes:
        return b"null" if self._inner is None else self._inner.snapshot()
