"""The in-process broker (memory mode, the embedded default) and its one housekeeping task.

The broker owns its channels and a single task that, every ``sweep_interval``, collects dead and
overflowing subscribers, sends heartbeats when due, and drops channels whose retention or idle time
is over. Nothing else runs in the background: publishing and subscribing do their work inline,
and so does keeping every channel's retained memory within the budget (``budget.py``).

A tick must not stall the loop in proportion to what the hub retains: ended runs' channels stay
``retention`` seconds (50,000 of them after a few minutes at 100 runs/s), and a tick that walked
them all stood still for about 40 ms every second. So a tick sweeps only the channels that have
subscribers (every one of those, every tick), checks the pending ones (at most
``max_pending_channels``, and each counts against its creator's limit until it goes) at every
tick, and checks the others for expiry a slice of the channels held when the current round
began, enough to finish the round in ``EXPIRY_ROUND_TICKS`` ticks: such a channel is dropped
less than twice that many ticks after its time is over. The same check packs a channel that rests
(``Channel.pack``: nothing published for ``PACK_AFTER`` seconds).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Sequence
from types import TracebackType

from gateway.errors import SubscriberError
from gateway.hub.broker import (
    BrokerStatistics,
    ChannelStatistics,
    Fence,
    HubEvent,
    HubSettings,
    Numbered,
    Position,
    ReducerFactory,
    Sink,
    Snapshot,
)
from gateway.hub.budget import MemoryBudget, malloc_trim
from gateway.hub.channel import PACK_AFTER, Channel, check_names, stored_events
from gateway.hub.counters import HubCounters

__all__ = ["MemoryBroker", "MemorySubscription"]

logger = logging.getLogger(__name__)

EXPIRY_ROUND_TICKS = 30
"""Ticks over which every channel is checked for expiry once (module docstring)."""
EXPIRY_SLICE_MIN = 1024
"""Channels checked per tick at least: a hub holding fewer checks them all at every tick."""


def _no_reducer(channel: str) -> None:
    return None


class MemorySubscription:
    """Ties a sink to a channel of a :class:`MemoryBroker`; ``close()`` detaches it."""

    __slots__ = ("_broker", "_channel", "_sink", "channel")

    def __init__(self, broker: MemoryBroker, channel: Channel, sink: Sink) -> None:
        self._broker = broker
        self._channel = channel
        self._sink = sink
        self.channel = channel.name

    def close(self) -> None:
        self._broker._detach(self._channel, self._sink)


class MemoryBroker:
    """Single-process :class:`~gateway.hub.broker.Broker`.

    Use as an async context manager (or call :meth:`aclose`); the housekeeping task starts on first
    use inside a running loop.
    """

    def __init__(
        self,
        settings: HubSettings | None = None,
        *,
        reducer_factory: ReducerFactory | None = None,
    ) -> None:
        self._settings = settings or HubSettings()
        self._reducer_factory: ReducerFactory = reducer_factory or _no_reducer
        self._channels: dict[str, Channel] = {}
        self._subscribed: dict[Channel, None] = {}
        """Channels that had a subscriber at their last sweep or got one since (ordered set)."""
        self._pending: dict[Channel, None] = {}
        """Channels created pending and not seen with an event since (ordered set)."""
        self._expiry_round: list[Channel] = []
        """Channels of the current expiry round not checked yet (module docstring)."""
        self._expiry_share = EXPIRY_SLICE_MIN
        """How many of them a tick checks (set when the round starts)."""
        self._counters = HubCounters()
        self._budget = MemoryBudget(self._settings.memory_budget, self._counters)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def settings(self) -> HubSettings:
        return self._settings

    async def __aenter__(self) -> MemoryBroker:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- Broker ---------------------------------------------------------------------------------

    async def publish(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        *,
        fence: Fence | None = None,
        first: Numbered | None = None,
    ) -> dict[str, Position]:
        # One process: a relay that lost its lease is stopped by its keeper, nothing to check.
        return self.publish_nowait(channels, events, first=first)

    def publish_nowait(
        self, channels: Sequence[str], events: Sequence[HubEvent], *, first: Numbered | None = None
    ) -> dict[str, Position]:
        """:meth:`publish` without the coroutine (memory mode never waits)."""
        now = self._start()
        if not events:
            return {}
        check_names(events)
        seqs: dict[str, Position] = {}
        budget = self._budget
        # One stored copy and one generation for every channel of the publish.
        stored = stored_events(events)
        gen = budget.next_gen()
        numbered: list[tuple[Channel, int]] = []
        for name in channels:
            channel = self._channels.get(name)
            if channel is None:
                channel = self._new_channel(name, now, pending=False)
            reopened = channel.ended
            seq = channel.publish(events, now, stored=stored, gen=gen, deliver=first is None)
            seqs[name] = Position(channel.epoch, seq)
            numbered.append((channel, seq))
            if reopened or not channel.in_budget_heap:
                budget.published(channel, reopened=reopened)
        if first is not None:
            # The publisher's own copy goes out before any subscriber's (see Broker.publish).
            try:
                first(seqs)
            finally:
                for channel, seq in numbered:
                    channel.deliver(seq, events, stored, now)
        if self._counters.retained_bytes > budget.limit:
            budget.enforce(self._evict)
        else:
            budget.note_peak()
        return seqs

    async def subscribe(
        self,
        channel: str,
        sink: Sink,
        *,
        since: Position | None = None,
        snapshot: bool = False,
        create: bool = False,
        owner: str | None = None,
    ) -> MemorySubscription:
        if self._closed:
            raise SubscriberError(503, "shutting_down", "the hub is shutting down")
        now = self._start()
        if since is not None and since.seq < 0:
            raise SubscriberError(400, "invalid_since", "since must be >= 0")
        ch = self._channels.get(channel)
        if ch is None:
            if not create:
                raise SubscriberError(404, "unknown_channel", f"no such stream: {channel}")
            self._check_pending_room(owner)
            if self._counters.subscribers >= self._settings.max_subscribers:
                raise SubscriberError(
                    429, "too_many_subscribers", "the hub has too many subscribers"
                )
            ch = self._new_channel(channel, now, pending=True, owner=owner)
        ch.attach(sink, since=since, snapshot=snapshot)
        self._subscribed[ch] = None
        # Its snapshot, made for this subscriber and cached, is charged: keep within the budget.
        self._keep_budget()
        return MemorySubscription(self, ch, sink)

    async def close_channel(self, channel: str) -> None:
        ch = self._channels.get(channel)
        if ch is not None:
            ch.end(self._start())
            self._budget.ended(ch)
            self._keep_budget()  # packed, its reducer is charged its pickle

    async def snapshot(self, channel: str) -> Snapshot | None:
        ch = self._channels.get(channel)
        if ch is None:
            return None
        snap = ch.snapshot()
        self._budget.enforce(self._evict)
        return snap

    async def channel_info(self, channel: str) -> ChannelStatistics | None:
        return self.channel_statistics(channel)

    async def held(self, channel: str) -> ChannelStatistics | None:
        return self.channel_statistics(channel)

    def channel_statistics(self, channel: str) -> ChannelStatistics | None:
        ch = self._channels.get(channel)
        return None if ch is None else ch.statistics()

    def statistics(self) -> BrokerStatistics:
        c = self._counters
        return BrokerStatistics(
            channels=len(self._channels),
            pending_channels=c.pending_channels,
            subscribers=c.subscribers,
            events_published=c.events_published,
            bytes_published=c.bytes_published,
            lagged=c.lagged,
            disconnected=c.disconnected,
            channels_dropped=c.channels_dropped,
            retained_bytes=c.retained_bytes,
            memory_budget=self._budget.limit,
            delivered=dict(c.delivered),
            ends=dict(c.ends),
            resumes=c.resumes,
            history_misses=c.history_misses,
            channels_evicted=self._budget.channels_evicted,
            events_evicted=self._budget.events_evicted,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # asyncio.wait never raises the task's CancelledError into us, but does raise ours.
            await asyncio.wait([task])
        for ch in self._channels.values():
            ch.end_all("shutdown")
            ch.discard()
        self._channels.clear()
        self._subscribed.clear()
        self._pending.clear()
        self._expiry_round.clear()

    def subscribed(self) -> list[Channel]:
        """The channels with a subscriber now, or until the next tick (it lets go of the others)."""
        return list(self._subscribed)

    # -- internals ------------------------------------------------------------------------------

    def _start(self) -> float:
        """Start housekeeping on first use; return the loop's clock."""
        if self._closed:
            raise RuntimeError("broker is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._housekeeping(), name="runcast-hub-housekeeping")
        return loop.time()

    def _check_pending_room(self, owner: str | None) -> None:
        counters, settings = self._counters, self._settings
        if counters.pending_channels >= settings.max_pending_channels:
            raise SubscriberError(429, "too_many_channels", "too many streams awaiting events")
        held = counters.pending_by_owner.get(owner, 0) if owner is not None else 0
        if held >= settings.max_pending_channels_per_client:
            raise SubscriberError(
                429,
                "too_many_channels_per_client",
                f"this client already holds {held} streams awaiting their first event; "
                "close some, or subscribe once a run has started",
            )

    def _new_channel(
        self, name: str, now: float, *, pending: bool, owner: str | None = None
    ) -> Channel:
        # A new epoch per channel log: a channel dropped and created again (a thread's next run
        # after idle_ttl) restarts at seq 1, and no position of its past life may match.
        reducer = self._reducer_factory(name)
        ch = Channel(
            name, self._settings, self._counters, reducer, now=now, epoch=secrets.token_hex(4)
        )
        self._register(ch, pending=pending, owner=owner)
        return ch

    def _register(self, ch: Channel, *, pending: bool, owner: str | None = None) -> None:
        if pending:
            ch.pending = True
            ch.owner = owner
            self._counters.add_pending(owner)
            self._pending[ch] = None
        self._channels[ch.name] = ch

    def _detach(self, ch: Channel, sink: Sink) -> None:
        if self._loop is not None and self._channels.get(ch.name) is ch:
            ch.detach(sink, self._loop.time())
        sink.end("detached")

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self._settings.heartbeat_interval
        interval = self._settings.sweep_interval
        if heartbeat > 0:
            interval = min(interval, heartbeat)
        next_heartbeat = loop.time() + heartbeat if heartbeat > 0 else float("inf")
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            beat = now >= next_heartbeat
            if beat:
                next_heartbeat = now + heartbeat
            try:
                self._sweep(now, heartbeat=beat)
            except Exception:
                # A bug here must not stop heartbeats and expiry for every other channel.
                logger.exception("hub housekeeping failed")
            if malloc_trim is not None and self._budget.trim_due():
                # Walks malloc's whole heap: off the loop (ctypes releases the GIL).
                await asyncio.to_thread(malloc_trim, 0)

    def _sweep(self, now: float, *, heartbeat: bool) -> None:
        subscribed = self._subscribed
        for ch in list(subscribed):
            ch.sweep(now, heartbeat=heartbeat)
            if not ch.subscriber_count:
                del subscribed[ch]
        channels = self._channels
        for ch in list(self._pending):
            if not ch.pending or channels.get(ch.name) is not ch:
                del self._pending[ch]
            elif ch.expired(now):
                self._drop_channel(ch)
        due = self._expiry_round
        if not due:
            due.extend(channels.values())
            self._expiry_share = max(EXPIRY_SLICE_MIN, math.ceil(len(due) / EXPIRY_ROUND_TICKS))
        share = self._expiry_share
        checked = due[-share:]
        del due[-share:]
        for ch in checked:
            # Dropped meanwhile, or dropped and created again under its name: not this one's.
            if channels.get(ch.name) is not ch:
                continue
            if ch.expired(now):
                self._drop_channel(ch)
            elif not ch.pending and now - ch.last_activity >= PACK_AFTER:
                ch.pack()  # resting: out of the cycle collector's walk (packed.py)
        self._keep_budget()
        self._budget.compact(channels.values())

    def _keep_budget(self) -> None:
        if self._counters.retained_bytes > self._budget.limit:
            self._budget.enforce(self._evict)

    def _evict(self, ch: Channel) -> None:
        """The budget drops an ended channel before its retention is over."""
        logger.debug("memory budget: dropping ended channel %s", ch.name)
        self._drop_channel(ch)

    def _drop_channel(self, ch: Channel) -> None:
        del self._channels[ch.name]
        self._subscribed.pop(ch, None)
        self._pending.pop(ch, None)
        self._budget.forget(ch)
        ch.end_all("ended")
        ch.discard()
