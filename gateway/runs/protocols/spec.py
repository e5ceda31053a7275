"""``StreamSpec``: what the stream pump needs to know of one protocol, one page.

A protocol (``responses.py``, ``chat.py``) types each upstream SSE event and says what it means
to the pump (:class:`Seen`): the stream's own id once an event reveals it, whether the event is
the stream's last word (a terminal event or ``[DONE]``), and the cursor a resume would start
after (``sequence_number``), and how to resume a stream the upstream can continue. Everything else about a protocol (its channels' snapshots, its
creating request) stays in its own module.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from parsers.sse import ServerSentEvent

__all__ = ["Seen", "StreamSpec"]


class Seen(msgspec.Struct, frozen=True, gc=False):
    """What one event tells the pump."""

    object_id: str | None = None
    """The stream's id (response or completion id), when this event names it."""
    end: bool = False
    """The stream's last word: after it, the end of the body is a clean end."""
    cursor: int | None = None
    """The event's ``sequence_number`` (Responses), None where the protocol has none."""
    resumable: bool = False
    """The upstream can resume this stream after a cut (a background response)."""


class StreamSpec(Protocol):
    """One upstream protocol, as the pump sees it."""

    @property
    def kind(self) -> str:
        """The object the stream creates, as runcast names it (``response``, ``chat``)."""
        ...

    def decode(self, sse: ServerSentEvent) -> tuple[object | None, Seen]:
        """The typed event (None when it does not decode: it is relayed as received) and what
        it means; never raises."""
        ...

    def channel(self, object_id: str) -> str:
        """The hub channel of one stream."""
        ...

    def resume(self, object_id: str, cursor: int) -> tuple[str, str] | None:
        """The ``GET`` (path under ``/v1``, query) that continues a resumable stream after
        ``cursor``, with no gap and no duplicate; None when the protocol cannot resume."""
        ...
