"""A channel's reducer packed into bytes while the channel rests, out of the cycle collector's walk.

Python's cycle collector walks every container object it tracks: a young collection walks the
young ones and promotes the survivors, older collections walk what was promoted, and every pause
stops the event loop. Channels outlive their runs (``retention`` for an ended one, ``idle_ttl``
for a thread's), and a run channel's reducer alone is half a dozen tracked objects (the
accumulator, its message and step states, their dicts), so the hub held about 40 tracked objects
per retained run: under ``runcast loadtest --rate 130`` a young collection came every 1,200 runs
and walked 50,000 of them (40-50 ms), and one middle-generation collection walked 500,000 (0.69 s).

So a channel that ended, or that nothing was published to for a while, packs its reducer:
:class:`PackedReducer` keeps the reducer pickled, in one ``bytes`` object the collector never
walks (a msgspec Struct with ``gc=False`` holding bytes is not tracked at all). Pickling is exact:
a publish to the channel later (a thread's next run, a run channel reopened) unpacks the same
state and folds on; a snapshot asked of a packed channel is made from a copy unpacked for the
moment (about 30 us for a finished run) and cached as the channel caches every snapshot. A
reducer that cannot be pickled stays as it is.
"""

from __future__ import annotations

import logging
import pickle

import msgspec

from gateway.hub.broker import HubEvent, Reducer

__all__ = ["PACKED_OVERHEAD", "PackedReducer", "pack", "unpack"]

PACKED_OVERHEAD = 64
"""Bytes charged for a packed reducer on top of its pickle: the Struct and the bytes header."""

logger = logging.getLogger(__name__)


class PackedReducer(msgspec.Struct, frozen=True, gc=False):
    """A reducer's state as a pickle; never tracked by the cycle collector."""

    state: bytes

    def apply(self, event: HubEvent) -> None:  # pragma: no cover - the channel unpacks first
        raise RuntimeError("a packed reducer must be unpacked before it folds events")

    def snapshot(self) -> bytes:
        return unpack(self).snapshot()

    @property
    def nbytes(self) -> int:
        return len(self.state) + PACKED_OVERHEAD


def pack(reducer: Reducer) -> Reducer:
    """``reducer`` packed (or itself, already packed or not picklable)."""
    if type(reducer) is PackedReducer:
        return reducer
    try:
        return PackedReducer(pickle.dumps(reducer, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        logger.debug("reducer %s stays unpacked: %s", type(reducer).__name__, exc)
        return reducer


def unpack(reducer: Reducer) -> Reducer:
    """The live reducer of ``reducer`` (a new one unpacked from a :class:`PackedReducer`)."""
    if type(reducer) is PackedReducer:
        live: Reducer = pickle.loads(reducer.state)  # our own bytes (pack), never input
        return live
    return reducer
