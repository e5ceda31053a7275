"""What a :class:`~gateway.runs.protocols.StreamRelay` needs to own its stream across nodes.

Redis mode only. :class:`StreamOwnership` is handed to the relay pumping a stream it creates:
once the stream's id is known the relay holds a lease keyed by the stream's own channel
(``response:<id>``, ``chat:<id>``; ``gateway.runs.keeper``), fences its publishes with it and
records the stream in :class:`~gateway.state.LiveRuns` with a :class:`~gateway.state.LiveStream`.
:class:`StreamAdoption` is what the takeover watcher hands to the relay of a node that won a dead
owner's stream (``gateway.runs.takeover``); :func:`published_cursor` reads, from the shared log's
snapshot of the stream's own channel, where its dead owner stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from gateway.hub import Broker
from gateway.state import Lease, LiveRuns, LiveStream, RunLeases

from ..takeover import snapshot_view

__all__ = ["Published", "StreamAdoption", "StreamOwnership", "published_cursor"]

log = logging.getLogger("runcast.relay")


@dataclass(frozen=True, kw_only=True)
class StreamOwnership:
    """The shared stores and the facts a creating request gives its relay's live record."""

    leases: RunLeases
    live: LiveRuns
    ttl: float
    owner: str
    api_key: str | None
    stored: bool
    """Whether a taker may read the finished object (the request did not say ``store: false``)."""


@dataclass(frozen=True, kw_only=True)
class StreamAdoption:
    """A dead owner's stream this node won (``lease``) and its live record."""

    lease: Lease
    stream: LiveStream


class Published(msgspec.Struct, frozen=True):
    """Where a stream's own channel stands."""

    cursor: int | None
    """The last ``sequence_number`` it holds (None: none, or not a Responses channel)."""
    done: bool
    """It holds the stream's last word."""
    object_id: str | None
    """The id of the response the snapshot is of (a tool chain's follow-up is another)."""


_ENDED = frozenset({"completed", "failed", "incomplete", "cancelled"})
"""A response's statuses once its stream's last word is out."""


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None


class _View(msgspec.Struct):
    response: _Response | None = None
    sequence_number: int | None = None
    done: bool = False


async def published_cursor(broker: Broker, channel: str) -> Published:
    """What ``channel`` (a Responses stream's own) holds, from its snapshot in the shared log."""
    view = await snapshot_view(broker, channel, _View)
    if view is None:
        return Published(None, False, None)
    response = view.response or _Response()
    done = view.done or response.status in _ENDED
    return Published(view.sequence_number, done, response.id)
