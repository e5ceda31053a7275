"""One channel: its seq counter, history, reducer and subscribers, and the fan-out of a batch.

Everything here is synchronous: a publish appends, reduces, encodes the batch once per frame format
in use and hands the same bytes to every sink; a subscribe replays and attaches in the same step.
With no ``await`` between the two, a subscriber can never miss or repeat an event (spec: resume
with no gap and no duplicate).

Write coalescing (``HubSettings.coalesce_ms``, ``--coalesce-ms``): a socket write costs about
as much as the rest of a delivery, so with a window, events are stored and numbered at once but
their fan-out waits for the window's timer: everything published meanwhile goes out as one batch,
one write per subscriber, with the same ids, order and bytes (SSE: one HTTP chunk instead of
several). A subscriber attaching meanwhile first gets the held events written to the others, so
its replay and the live events still meet without gap or duplicate. A batch with a terminal event
(:data:`FLUSH_AT_ONCE`) goes out at once with everything held before it, and so does what is held
when the channel ends or is dropped. The timer belongs to the channel and is cancelled there.

Each channel charges what it retains (history, reducer state, cached snapshot) to the broker's
``HubCounters.retained_bytes``; ``budget.py`` decides what to evict when that is over the budget.

A channel that ended, whose stream just ended (a batch ending with one of :data:`STREAM_ENDS`:
a thread's channel between two runs, a conversation's between two responses), or that rests (the
broker calls :meth:`Channel.pack` once nothing was published to it for ``PACK_AFTER`` seconds)
keeps its reducer pickled and its history in tuples (``packed.py``): the cycle collector then
tracks next to nothing of it. It unpacks on the next publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

from gateway.errors import SubscriberError
from gateway.hub import frames
from gateway.hub.broker import (
    HISTORY_LOST_EVENT,
    SNAPSHOT_EVENT,
    ChannelStatistics,
    EndReason,
    FrameFormat,
    HubEvent,
    HubSettings,
    Position,
    Reducer,
    Sink,
    SizedReducer,
    Snapshot,
)
from gateway.hub.counters import HubCounters
from gateway.hub.history import History
from gateway.hub.packed import PackedReducer, pack, unpack

SNAPSHOT_OVERHEAD = 64
"""Bytes charged for a cached snapshot on top of its JSON: the Struct and the bytes header."""

FLUSH_AT_ONCE = frozenset(
    {
        "done",
        "error",
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
"""Events that end a stream (or wait for someone's action): never held back by coalescing."""

STREAM_ENDS = frozenset({"done", "response.completed", "response.incomplete", "response.failed"})
"""The last events of a stream (with a chat stream's ``[DONE]``): the channel packs after them."""

PACK_AFTER = 5.0
"""Seconds without a publish after which the broker packs a channel (``packed.py``)."""

__all__ = ["FLUSH_AT_ONCE", "PACK_AFTER", "STREAM_ENDS", "Channel", "check_names", "stored_events"]

logger = logging.getLogger(__name__)


def check_names(events: Sequence[HubEvent]) -> None:
    """Refuse a batch whose names cannot be SSE ``event:`` lines, before anything is stored (a
    refused batch leaves no gap in any channel)."""
    for event in events:
        if "\n" in event.name or "\r" in event.name:
            raise ValueError(f"event name must not contain CR or LF: {event.name!r}")


class Channel:
    """A named, numbered event log with subscribers. Owned by one broker; not thread-safe."""

    __slots__ = (
        "_charged",
        "_counters",
        "_held",
        "_held_seq",
        "_history",
        "_reducer",
        "_settings",
        "_sinks",
        "_sized",
        "_snapshot_cache",
        "_timer",
        "bytes_published",
        "disconnected",
        "ended",
        "ended_at",
        "epoch",
        "events_published",
        "in_budget_heap",
        "lagged",
        "last_activity",
        "name",
        "owner",
        "pending",
    )

    def __init__(
        self,
        name: str,
        settings: HubSettings,
        counters: HubCounters,
        reducer: Reducer | None,
        *,
        now: float,
        epoch: str,
    ) -> None:
        self.name = name
        self.epoch = epoch
        """The epoch of this channel's seqs (chosen by the broker when the log starts)."""
        self._settings = settings
        self._counters = counters
        self._reducer = reducer
        # Not isinstance(reducer, SizedReducer): a runtime Protocol check costs about 20 us on
        # 3.11, once per channel, and only `nbytes` tells the two kinds apart.
        sized = reducer is not None and hasattr(type(reducer), "nbytes")
        self._sized = cast("SizedReducer", reducer) if sized else None
        self._charged = 0
        self.in_budget_heap = False
        """Whether the budget's heap of live histories has an entry for this channel."""
        self._history = History(
            max_events=settings.max_history_events, max_bytes=settings.max_history_bytes
        )
        # One dict per format that has had subscribers, so a batch is encoded only for formats
        # in use; none before the first (an empty dict is not tracked by the cycle collector).
        self._sinks: dict[FrameFormat, dict[Sink, None]] = {}
        self._snapshot_cache: Snapshot | None = None
        self._held: list[HubEvent] | None = None
        """Published events whose fan-out waits for the coalescing window (history has them)."""
        self._held_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self.pending = False
        """Created by a subscriber and still without events (counted in ``pending_channels``)."""
        self.owner: str | None = None
        """The client that created the channel while pending (counted in ``pending_by_owner``)."""
        self.ended = False
        self.ended_at = 0.0
        self.last_activity = now
        self.events_published = 0
        self.bytes_published = 0
        self.lagged = 0
        self.disconnected = 0

    @property
    def last_seq(self) -> int:
        return self._history.last_seq

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._sinks.values())

    # -- publishing -----------------------------------------------------------------------------

    def publish(
        self,
        events: Sequence[HubEvent],
        now: float,
        *,
        stored: Sequence[HubEvent] | None = None,
        gen: int = 0,
        deliver: bool = True,
    ) -> int:
        """Append a non-empty batch checked by :func:`check_names`; returns its first seq.

        ``stored`` is what history keeps of ``events`` (without their parsed form; the broker
        builds it once for all the channels of a publish), ``gen`` the publish's generation.
        With ``deliver=False`` the subscribers are written only by a later :meth:`deliver` (the
        broker numbers every channel of a publish first, then writes).
        """
        if self.pending:
            self._end_pending()
        self.ended = False
        self.last_activity = now
        history = self._history
        first_seq = history.last_seq + 1
        reducer = self._reducer
        if reducer is not None and type(reducer) is PackedReducer:
            reducer = self._unpack()
        nbytes = 0
        if stored is None:
            stored = stored_events(events)
        for event, kept in zip(events, stored, strict=True):
            history.append(kept, gen)
            nbytes += len(event.data)
            if reducer is not None:
                try:
                    reducer.apply(event)
                except Exception:
                    # STYLE 4: a bad event is reported, never fatal to the channel.
                    logger.exception(
                        "reducer of %s failed on %r; event skipped", self.name, event.name
                    )
        self._snapshot_cache = None
        self.recharge()
        self.events_published += len(events)
        self.bytes_published += nbytes
        self._counters.events_published += len(events)
        self._counters.bytes_published += nbytes
        if deliver:
            self.deliver(first_seq, events, stored, now)
        last = events[-1]
        if last.name in STREAM_ENDS or last.data == b"[DONE]":
            self.pack()  # its stream ended: it rests until the next one
        return first_seq

    def deliver(
        self, first_seq: int, events: Sequence[HubEvent], stored: Sequence[HubEvent], now: float
    ) -> None:
        """Write a batch published from ``first_seq`` to the subscribers (or hold it for the
        coalescing window); ``stored`` is its history form, as given to :meth:`publish`."""
        if self._settings.coalesce_ms > 0:
            self._hold(first_seq, stored, now)
        else:
            self._fan_out(first_seq, events, now)

    def flush(self, now: float | None = None) -> None:
        """Write what the coalescing window holds to the subscribers now."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        held = self._held
        if held:
            self._held = None
            self._fan_out(self._held_seq, held, self.last_activity if now is None else now)

    def _hold(self, first_seq: int, events: Sequence[HubEvent], now: float) -> None:
        if not any(self._sinks.values()):
            return  # nobody to write to; a subscriber attaching later replays history
        if self._held is None:
            self._held_seq = first_seq
            self._held = list(events)
        else:
            self._held.extend(events)
        if any(event.name in FLUSH_AT_ONCE for event in events):
            self.flush(now)
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self._settings.coalesce_ms / 1000, self._window_over, loop
            )

    def _window_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self.flush(loop.time())

    def _fan_out(self, first_seq: int, events: Sequence[HubEvent], now: float) -> None:
        last_seq = first_seq + len(events) - 1
        for fmt, sinks in self._sinks.items():
            if not sinks:
                continue
            data = frames.encode_batch(fmt, self.epoch, first_seq, events)
            delivered = self._counters.delivered
            delivered[fmt.value] = delivered.get(fmt.value, 0) + len(events) * len(sinks)
            dead: list[Sink] | None = None
            for sink in sinks:
                if not sink.send(data, last_seq):
                    if dead is None:
                        dead = []
                    dead.append(sink)
            if dead:
                self._drop(sinks, dead, now)

    def notify(self, name: str, data: bytes, now: float, *, only: Sink | None = None) -> None:
        """Write an unnumbered notice to every subscriber (or to ``only``, if attached here): no
        seq, no history, no ``id:`` line, so a resume position is never moved by it."""
        self.flush(now)
        for fmt, sinks in self._sinks.items():
            if not sinks or (only is not None and only not in sinks):
                continue
            data_bytes = frames.encode_notice(fmt, name, data)
            targets = [only] if only is not None else list(sinks)
            # Every attached sink has been written up to last_seq (flushed above).
            dead = [sink for sink in targets if not sink.send(data_bytes, self.last_seq)]
            if dead:
                self._drop(sinks, dead, now)

    def start_after(self, seq: int) -> None:
        """Number this (still empty) channel's next event ``seq + 1``: a local copy of a log
        that a multi-node broker starts mirroring part-way through."""
        self._history.skip_to(seq)

    # -- subscribing ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        cached = self._snapshot_cache
        if cached is None:
            data = self._reducer.snapshot() if self._reducer is not None else b"null"
            cached = self._snapshot_cache = Snapshot(seq=self.last_seq, data=data, epoch=self.epoch)
            self.recharge()
        return cached

    def check_capacity(self) -> None:
        if self.subscriber_count >= self._settings.max_subscribers_per_channel:
            raise SubscriberError(
                429, "too_many_subscribers", f"channel {self.name} has too many subscribers"
            )
        if self._counters.subscribers >= self._settings.max_subscribers:
            raise SubscriberError(429, "too_many_subscribers", "the hub has too many subscribers")

    def begin_epoch(self, epoch: str) -> None:
        """The log of this pending channel began (Redis mode: its first event brings the epoch);
        subscribers already waiting on it number their positions in that epoch from now on."""
        self.epoch = epoch
        for sinks in self._sinks.values():
            for sink in sinks:
                sink.start(epoch)

    def attach(self, sink: Sink, *, since: Position | None, snapshot: bool) -> None:
        """Write what the subscriber asked for from the past, then attach it (or end it)."""
        self.check_capacity()
        sink.start(self.epoch)
        # The replay below reaches the last seq: the others must have been written that far too.
        self.flush()
        history = self._history
        last_seq = history.last_seq
        items: list[frames.Item] = []
        after: int | None = None
        if since is not None:
            self._counters.resumes += 1
            if since.matches(self.epoch) and history.holds_after(since.seq):
                after = since.seq
            else:
                self._counters.history_misses += 1
                items.append((None, HISTORY_LOST_EVENT, self._lost(str(since))))
                snapshot = True
        if after is not None:
            items.extend((seq, e.name, e.data) for seq, e in history.after(after))
        elif snapshot:
            if self._reducer is not None:
                snap = self.snapshot()
                items.append((snap.seq, SNAPSHOT_EVENT, snap.to_json()))
            else:
                if history.first_seq > 1 and not items:
                    items.append((None, HISTORY_LOST_EVENT, self._lost("0")))
                items.extend((seq, e.name, e.data) for seq, e in history.after(0))
        if items:
            if not sink.send(frames.encode_items(sink.frame_format, items, self.epoch), last_seq):
                self._count_end(sink.end_reason)
                return
            delivered = self._counters.delivered
            fmt = sink.frame_format.value
            delivered[fmt] = delivered.get(fmt, 0) + len(items)
        else:
            # Live only: it stands at the last seq (what its notices name), not at the start.
            sink.last_seq = last_seq
        if self.ended:
            sink.end("ended")
            self._count_end("ended")
            return
        sinks = self._sinks.get(sink.frame_format)
        if sinks is None:
            sinks = self._sinks[sink.frame_format] = {}
        sinks[sink] = None
        self._counters.subscribers += 1

    def detach(self, sink: Sink, now: float) -> bool:
        sinks = self._sinks.get(sink.frame_format)
        if sinks is None or sink not in sinks:
            return False
        self._drop(sinks, [sink], now)
        return True

    # -- lifecycle ------------------------------------------------------------------------------

    def end(self, now: float) -> None:
        self.ended = True
        self.ended_at = now
        self.end_all("ended")
        self.pack()

    def pack(self) -> None:
        """Keep the reducer pickled and the history in tuples until the next publish, and drop
        the per-format subscriber dicts when none is attached (see the module docstring)."""
        self.flush()
        if self._reducer is not None and type(self._reducer) is not PackedReducer:
            packed = pack(self._reducer)
            if packed is not self._reducer:
                self._reducer = packed
                self._sized = cast("SizedReducer", packed)
                self.recharge()
        self._history.pack()
        if self._sinks and not self.subscriber_count:
            self._sinks = {}

    @property
    def packed(self) -> bool:
        return self._reducer is not None and type(self._reducer) is PackedReducer

    def _unpack(self) -> Reducer:
        reducer = self._reducer = unpack(cast("Reducer", self._reducer))
        self._sized = cast("SizedReducer", reducer) if hasattr(type(reducer), "nbytes") else None
        return reducer

    def end_all(self, reason: EndReason, *, rewind_to: int | None = None) -> None:
        """End every subscriber; with ``rewind_to``, telling it to resume from that seq
        (``Sink.rewind``, which ends it as lagged)."""
        self.flush()
        ends = self._counters.ends
        for sinks in self._sinks.values():
            self._counters.subscribers -= len(sinks)
            if sinks:
                ends[reason] = ends.get(reason, 0) + len(sinks)
            for sink in list(sinks):
                if rewind_to is None:
                    sink.end(reason)
                else:
                    sink.rewind(rewind_to)
            sinks.clear()

    def sweep(self, now: float, *, heartbeat: bool) -> None:
        """Drop dead or overflowing subscribers; send heartbeats when due."""
        for sinks in self._sinks.values():
            if heartbeat:
                dead = [s for s in sinks if not s.heartbeat()]
            else:
                dead = [s for s in sinks if not s.poll()]
            if dead:
                self._drop(sinks, dead, now)

    def expired(self, now: float) -> bool:
        s = self._settings
        if self.ended:
            return now - self.ended_at >= s.retention
        if self.subscriber_count:
            return False
        # A pending channel holds nothing worth keeping; forgetting it soon frees the limits.
        ttl = min(s.pending_grace, s.idle_ttl) if self.pending else s.idle_ttl
        return now - self.last_activity >= ttl

    def discard(self) -> None:
        """Called when the broker forgets the channel."""
        if self.pending:
            self._end_pending()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._held = None
        self._counters.channels_dropped += 1
        self._history.clear()
        # A stale budget heap entry may still point here: keep nothing alive through it.
        self._reducer = self._sized = None
        self._snapshot_cache = None
        self.recharge()

    # -- memory budget --------------------------------------------------------------------------

    @property
    def history_events(self) -> int:
        return len(self._history)

    @property
    def oldest_gen(self) -> int | None:
        """Publish generation of the oldest event in history (None when history is empty)."""
        return self._history.oldest_gen

    def evict_history(self, nbytes: int, *, through_gen: int) -> int:
        """Drop the oldest history published at or before ``through_gen`` until ``nbytes`` are
        freed; returns the bytes freed. Subscribers resuming from before what is left get
        ``runcast.history_lost`` and the snapshot (``attach``)."""
        freed = self._history.evict_oldest(nbytes, through_gen=through_gen)
        if freed:
            self.recharge()
        return freed

    @property
    def retained_bytes(self) -> int:
        return self._charged

    def recharge(self) -> None:
        """Charge the broker's ``retained_bytes`` with what this channel holds now."""
        held = self._history.nbytes
        if self._sized is not None:
            held += self._sized.nbytes
        cached = self._snapshot_cache
        if cached is not None:
            held += len(cached.data) + SNAPSHOT_OVERHEAD
        self._counters.retained_bytes += held - self._charged
        self._charged = held

    def statistics(self) -> ChannelStatistics:
        h = self._history
        return ChannelStatistics(
            name=self.name,
            epoch=self.epoch,
            last_seq=h.last_seq,
            first_seq=h.first_seq,
            history_events=len(h),
            history_bytes=h.nbytes,
            subscribers=self.subscriber_count,
            ended=self.ended,
            events_published=self.events_published,
            bytes_published=self.bytes_published,
            lagged=self.lagged,
            disconnected=self.disconnected,
            retained_bytes=self._charged,
        )

    # -- internals ------------------------------------------------------------------------------

    def _lost(self, since: str) -> bytes:
        h = self._history
        return b'{"since":"%s","epoch":"%s","first_seq":%d,"last_seq":%d}' % (
            since.encode(),
            self.epoch.encode(),
            h.first_seq,
            h.last_seq,
        )

    def _end_pending(self) -> None:
        self.pending = False
        self._counters.release_pending(self.owner)
        self.owner = None

    def _drop(self, sinks: dict[Sink, None], dead: list[Sink], now: float) -> None:
        for sink in dead:
            if sinks.pop(sink, 0) is None:
                self._counters.subscribers -= 1
                self._count_end(sink.end_reason)
        if not sinks and dead:
            # A dict never shrinks: after 10,000 subscribers it would keep ~300 KiB for good.
            self._sinks[dead[0].frame_format] = {}
        # The idle clock starts when the last subscriber leaves.
        self.last_activity = now

    def _count_end(self, reason: EndReason | None) -> None:
        if reason is not None:
            self._counters.ends[reason] = self._counters.ends.get(reason, 0) + 1
        if reason == "lagged":
            self.lagged += 1
            self._counters.lagged += 1
        elif reason == "disconnected":
            self.disconnected += 1
            self._counters.disconnected += 1


def stored_events(events: Sequence[HubEvent]) -> list[HubEvent]:
    # History is bounded by bytes of data: it must not keep a publisher's parsed form.
    return [e if e.decoded is None else HubEvent(e.name, e.data) for e in events]
