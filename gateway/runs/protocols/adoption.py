"""A Responses or Chat stream's relay started for a dead owner's stream: taken up where it stood.

A function of the relay's state (:class:`~gateway.runs.protocols.relay.StreamRelay`, passed
explicitly), run before its first stream when it was started with a
:class:`~gateway.runs.protocols.ownership.StreamAdoption` (the owner died and this node won its
lease).

Takeover. The relay reads where the stream's own channel stands (its snapshot in
the shared log) and, into the same channels: a resumable (background) response is resumed after
the last ``sequence_number`` published, as a cut stream is, so subscribers see one gap-free,
duplicate-free stream; a stored one is reconciled by polling; any other stream (chat,
``store: false``) ends with ``runcast.upstream_lost`` ``reason: "owner_lost"``. A stream whose
channel already has its last word is only closed. A tool chain the dead owner was in is not
continued: the taker ends after the response it recovers (a follow-up under way, whose id the
record does not hold, ends with ``runcast.upstream_lost``); so does one whose handlers were
running (the record says a chain is under way: ``LiveStream.chain``), where the response's
channel has its last word and only the follow-up is missing.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from gateway.errors import UpstreamConnectionError

from .lost import OWNER_LOST
from .ownership import StreamAdoption, published_cursor
from .settling import settle
from .toolchain import Opener

if TYPE_CHECKING:
    from .relay import StreamRelay

__all__ = ["take_over"]

log = logging.getLogger("runcast.relay")

_CHAIN_LOST = "the gateway node answering this stream's tool calls stopped"


async def take_over(relay: StreamRelay, adopted: StreamAdoption) -> Opener | None:
    """A dead owner's stream (module docstring): its resumption's opener, or None once it
    is settled here."""
    stream = adopted.stream
    relay.owning = True
    keeper, ownership, out, spec = relay.keeper, relay.ownership, relay.out, relay.spec
    if keeper is not None and ownership is not None:
        keeper.adopt(adopted.lease)
        out.fence = keeper.fence
        await keeper.record("", ownership.api_key, stream=stream)
    relay.object_id = stream.object_id
    out.own = spec.channel(stream.object_id)
    relay.received = True
    relay.resolve_start()
    relay.resumable = stream.resumable
    published = await published_cursor(relay.broker, out.own)
    if published.done and stream.chain:
        # The response ended and the dead owner was answering its tool calls: the follow-up
        # is not continued here, and the channels are told so rather than left waiting.
        log.warning(
            "%s %s: its owner stopped during a tool chain; not continued",
            spec.kind,
            stream.object_id,
        )
        relay.reconcile = None
        await settle(relay, UpstreamConnectionError(_CHAIN_LOST), reason=OWNER_LOST)
        return None
    if published.done:
        relay.ended = True
        relay.outcome = "ended"
        return None
    cursor = relay.cursor = published.cursor
    same = published.object_id in (None, stream.object_id)
    if not same:
        relay.reconcile = None  # a tool chain's follow-up was under way: not continued
    exc = UpstreamConnectionError("the gateway node relaying this stream stopped")
    reopen = relay.reopen
    if same and relay.resumable and cursor is not None and reopen is not None:
        request = spec.resume(stream.object_id, cursor)
        if request is not None:
            log.warning(
                "%s %s: its owner stopped; resuming after %d", spec.kind, stream.object_id, cursor
            )
            relay.resuming = True
            return functools.partial(reopen, *request)
    await settle(relay, exc, reason=OWNER_LOST)
    return None
