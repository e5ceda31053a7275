"""``StreamSpec``: what the stream pump needs to know of one protocol, one page.

A protocol (``responses.py``, ``chat.py``) types each upstream SSE event and says what it means
to the pump (:class:`Seen`): the stream's own id once an event reveals it, whether the event is
the stream's last word (a terminal event or ``[DONE]``), and the cursor a resume would start
after (``sequence_number``), and how to resume a stream the upstream can continue. Everything else about a protocol (its channels' snapshots, its
creating request) stays in its own module.

A stream that can be neither continued nor resumed may still be *reconciled*: a protocol that can
read the finished object (a stored response) gives the pump a :class:`Reconcile`, whose
:class:`Reconciled` answer is what to publish in place of the lost tail, and which also tells
whether a cut stream's object was cancelled (then it is not resumed).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from gateway.hub import HubEvent
from parsers.sse import ServerSentEvent

__all__ = ["Reconcile", "Reconciled", "Seen", "StreamSpec"]


class Seen(msgspec.Struct, frozen=True, gc=False):
    """What one event tells the pump."""

    object_id: str | None = None
    """The stream's id (response or completion id), when this event names it."""
    end: bool = False
    """The stream's last word: after it, the end of the body is a clean end."""
    closes: bool = False
    """The marker that ends the HTTP stream (``data: [DONE]``): nothing after it belongs to the
    stream. Unless the last word came first (or is this event), the stream was cut."""
    cursor: int | None = None
    """The event's ``sequence_number`` (Responses), None where the protocol has none."""
    idle: bool = False
    """The event carries nothing of the stream's object (an ``error`` or a ``keepalive``): it
    moves the cursor but is no progress to a resumption that keeps failing."""
    resumable: bool = False
    """The upstream can resume this stream after a cut (a background response)."""
    about: str | None = None
    """The id of the object this event carries (a lifecycle or terminal event's response):
    a stream, first or resumed, whose events are about another object than the one its first
    event named is not this stream's from that event on."""
    said: str | None = None
    """The message of an error event of the upstream's: a stream that then ends without its
    last word says it in its ``runcast.upstream_lost``."""
    parts: tuple[int, ...] = ()
    """The parts of the stream this event carries (a chat chunk's choice indices), for a
    protocol whose stream is also complete when it ends without its last word once every part
    has finished (:meth:`StreamSpec.last_word`)."""
    finished: tuple[int, ...] = ()
    """Those of them this event finishes (a choice's ``finish_reason``)."""


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

    def last_word(self) -> HubEvent | None:
        """The last word to publish for a stream whose body ended without it once every part
        it carried had finished (:attr:`Seen.parts`); None: such a stream was cut."""
        ...

    def calls_tools(self, typed: object) -> bool:
        """Whether ``typed`` is where a stream turns to tool calls that a chain's follow-up
        would fold into the creator's copy (chat: each round is choice 0 again, its calls
        numbered from 0 again, so the SDK's helper would merge every round's calls); the
        creator's copy is held from there until the chain says whether it goes on."""
        ...

    def said_with_calls(self, event: HubEvent) -> tuple[HubEvent, HubEvent] | None:
        """A turning event (``calls_tools``) cut in two, what it says beside its calls (the
        creator gets it at once) and its calls (held); None: it says nothing else."""
        ...

    def names(self, event: HubEvent) -> bool:
        """Whether the event names the role of the creator's message (chat: a delta's
        ``role``): the creator gets it once, with the first event given to it that names it."""
        ...

    def continued(self, event: HubEvent) -> HubEvent:
        """An event of a round after an answered one, as the chain's creator gets it once it
        has been given the role (chat: its deltas without ``role``, which the SDK would join to
        the one it has)."""
        ...

    def usage(self, event: HubEvent) -> dict[str, Any] | None:
        """The ``usage`` object the event carries, for a chain's creator to get the sum of its
        rounds' (None: none, or the creator gets every round's as it is)."""
        ...

    def with_usage(self, event: HubEvent, usage: dict[str, Any]) -> HubEvent:
        """An event that carries ``usage`` (:meth:`usage`) with ``usage`` in its place."""
        ...


class Reconciled(msgspec.Struct, frozen=True, kw_only=True):
    """What the upstream's finished object says of a stream cut before its end."""

    status: str
    """The object's terminal status."""
    events: list[HubEvent]
    """To publish, in order, after the last event relayed."""
    ended: bool
    """The events end with the protocol's last word; False: the status has no event of its own
    (a cancelled response), and the stream ends with ``runcast.upstream_lost`` naming it."""


class Reconcile(Protocol):
    """Reads of a stream's finished object upstream."""

    async def __call__(
        self, object_id: str, cursor: int | None, reason: str, /
    ) -> Reconciled | None:
        """``(object id, last cursor, failure reason)`` -> what to publish, or None when the
        object's end cannot be learnt (the stream then ends with ``runcast.upstream_lost``)."""
        ...

    async def cancelled(self, object_id: str, /) -> bool:
        """Whether the object is cancelled upstream, from one quick read (False when unknown):
        a stream a cancel cut is not resumed, whichever node or client sent the cancel."""
        ...
