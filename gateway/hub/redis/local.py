"""This node's local channels, each a mirror of its channel's log in Redis.

The Redis broker keeps a local :class:`~gateway.hub.channel.Channel` only for the channels this
node serves, in the memory broker's registry (with its budget and counters); :class:`LocalChannels`
is what feeds them from the log:

- A node's first subscriber to a channel mirrors it: the live messages for that channel are held
  back while its meta and the log's tail are read (one ``MULTI``), then applied on top; the
  subscriber is attached to the local channel without an ``await`` in between (memory mode's
  replay-then-live), so it gets no gap and no duplicate whatever the reads awaited.
- Each live batch (read by the follower, ``follower.py``) is applied to the local channel it
  names, in order; while this node's own publish to a channel is under way, that channel's live
  batches wait until the publisher has fed its batch (after its creator's copy), then follow. A batch that does not continue the local seq is a gap: the missing range is
  read from the log (``XRANGE``) before it is applied, so local subscribers never see a hole. A
  batch already held is dropped.
- A local channel whose log moved on (a new epoch, or a hole the log no longer holds) is reset:
  its subscribers' streams end as lagging ones do (WebSocket 1013), and their resume gets
  ``runcast.history_lost`` and the snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.errors import REDIS_UNREACHABLE, SubscriberError
from gateway.hub.broker import HubEvent, HubSettings, Position, ReducerFactory
from gateway.hub.budget import MemoryBudget
from gateway.hub.channel import Channel, stored_events
from gateway.hub.counters import HubCounters
from gateway.hub.redis.log import RedisLog
from gateway.hub.redis.wire import LiveMessage, decode_batch

__all__ = ["LocalChannels", "Registry"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Registry:
    """What :class:`LocalChannels` uses of the broker whose channels it feeds: the memory
    broker's registry, budget and counters, and the calls that keep them consistent. The Redis
    broker builds it from its own (inherited) state."""

    channels: dict[str, Channel]
    settings: HubSettings
    reducers: ReducerFactory
    budget: MemoryBudget
    counters: HubCounters
    now: Callable[[], float]
    """The broker's clock (it raises once the broker is closed)."""
    subscribed: Callable[[], list[Channel]]
    check_pending_room: Callable[[str | None], None]
    register: Callable[..., None]
    """``register(ch, *, pending, owner=None)``: a new channel in the registry and the budget."""
    evict: Callable[[Channel], None]
    drop: Callable[[Channel], None]


class LocalChannels:
    """The local channels of a broker (its registry, budget and counters, shared with it), fed
    from ``log``.

    ``channels`` is the broker's registry; ``loading`` holds back the live messages of each channel
    being mirrored (present while its reads are under way); ``now()`` is the broker's clock (it
    raises once the broker is closed).
    """

    def __init__(self, registry: Registry, log: RedisLog) -> None:
        self._registry = registry
        self._log = log
        self.channels = registry.channels
        self._settings = registry.settings
        self._reducers = registry.reducers
        self._budget = registry.budget
        self._counters = registry.counters
        self.now = registry.now
        self.loading: dict[str, list[LiveMessage]] = {}
        self._loaded: dict[str, asyncio.Event] = {}
        self.publishing: dict[str, list[LiveMessage]] = {}
        """The live messages held back for each channel this node is publishing to (see
        :meth:`hold`)."""
        self._publishes: dict[str, int] = {}
        self.repairs = 0
        """Gaps filled from the log (live messages lost or late)."""

    def subscribed(self) -> list[Channel]:
        """The local channels with a subscriber (the broker's, see ``MemoryBroker.subscribed``)."""
        return self._registry.subscribed()

    async def mirror(self, name: str, *, create: bool, owner: str | None) -> None:
        """Make sure this node holds a local channel for ``name`` fed from the log."""
        while name in self._loaded:
            await self._loaded[name].wait()
        if name in self.channels:
            return
        self.loading[name] = []
        done = self._loaded[name] = asyncio.Event()
        try:
            try:
                (epoch, last, end), held = await self._log.read_tail(name)
            except (RedisError, OSError) as exc:
                # Only a channel this node already holds can be served while Redis is away. The
                # client is not told Redis's address: the log is.
                logger.warning("channel %s: Redis unreachable: %s", name, exc)
                raise SubscriberError(503, "broker_unavailable", REDIS_UNREACHABLE) from exc
            now = self.now()
            registry = self._registry
            if epoch is None:
                if not create:
                    raise SubscriberError(404, "unknown_channel", f"no such stream: {name}")
                registry.check_pending_room(owner)
                ch = self.create(name, "", now)
                registry.register(ch, pending=True, owner=owner)
            else:
                ch = self.create(name, epoch.decode(), now)
                first = int(last) - len(held) + 1
                ch.start_after(first - 1)
                registry.register(ch, pending=False)
                if held:
                    self.feed(ch, held)
                if end is not None and int(end) == ch.last_seq:
                    self.end(ch)
            buffered = self.loading[name]
            while buffered:
                await self.apply(buffered.pop(0), held=True)
        finally:
            self.loading.pop(name, None)
            del self._loaded[name]
            done.set()

    def hold(self, names: Sequence[str]) -> None:
        """A publish of this node is appending to ``names``: hold their live messages back. Its
        own batch could come back on the live channel before the append's answer, and reach
        this node's subscribers before the publisher's own copy (``Broker.publish(first=)``)."""
        for name in names:
            self._publishes[name] = self._publishes.get(name, 0) + 1
            self.publishing.setdefault(name, [])

    async def release(self, names: Sequence[str]) -> None:
        """That publish is over (its batch fed here after its ``first`` copy, or it failed):
        apply what was held back, in order (the publisher's own batch is then skipped as held)."""
        for name in names:
            left = self._publishes[name] - 1
            if left:
                self._publishes[name] = left
                continue
            del self._publishes[name]
            held = self.publishing[name]
            try:
                while held:
                    await self.apply(held.pop(0), held=True)
            finally:
                if name not in self._publishes:  # no publish began meanwhile
                    del self.publishing[name]

    def create(self, name: str, epoch: str, now: float) -> Channel:
        """A new local channel for ``name`` in ``epoch`` (registered by the caller)."""
        return Channel(
            name, self._settings, self._counters, self._reducers(name), now=now, epoch=epoch
        )

    def feed(self, ch: Channel, events: Sequence[HubEvent]) -> None:
        budget = self._budget
        reopened = ch.ended
        ch.publish(events, self.now(), stored=stored_events(events), gen=budget.next_gen())
        if reopened or not ch.in_budget_heap:
            budget.published(ch, reopened=reopened)
        if self._counters.retained_bytes > budget.limit:
            budget.enforce(self._registry.evict)

    def feed_at(self, ch: Channel, at: Position, events: Sequence[HubEvent]) -> bool:
        """Feed ``events`` (first at ``at``) when they continue the local channel; else False."""
        if ch.pending and ch.last_seq == 0:
            ch.begin_epoch(at.epoch)
        if at.epoch != ch.epoch or at.seq != ch.last_seq + 1:
            return False
        self.feed(ch, events)
        return True

    def end(self, ch: Channel) -> None:
        """The channel's log was closed after what the local channel holds."""
        ch.end(self.now())
        self._budget.ended(ch)

    async def apply(self, m: LiveMessage, *, held: bool = False) -> None:
        """Apply a live message to its local channel (``held``: one held back while mirroring)."""
        if not held:
            waiting = self.loading.get(m.channel)
            if waiting is None:
                waiting = self.publishing.get(m.channel)
            if waiting is not None:
                waiting.append(m)
                return
        ch = self.channels.get(m.channel)
        if ch is None:
            return
        if ch.pending and ch.last_seq == 0:
            ch.begin_epoch(m.epoch)
        if m.epoch != ch.epoch:
            self.reset(ch)
            return
        if m.kind == b"P":
            events = decode_batch(m.body)
            last = m.seq + len(events) - 1
            if last <= ch.last_seq:
                return
            if m.seq > ch.last_seq + 1:
                ch = await self.repair(ch, m.seq - 1)
                if ch is None:
                    return
            self.feed_at(ch, Position(m.epoch, ch.last_seq + 1), events[ch.last_seq + 1 - m.seq :])
        else:
            if m.seq < ch.last_seq:
                return  # an end the channel was reopened after (applied late: held back)
            if m.seq > ch.last_seq:
                ch = await self.repair(ch, m.seq)
                if ch is None:
                    return
            self.end(ch)

    async def repair(self, ch: Channel, through: int) -> Channel | None:
        """Fill the local channel from the log up to ``through``; None if the log no longer holds
        the range (the channel is reset)."""
        start = ch.last_seq + 1
        events = await self._log.read_log(ch.name, start, through)
        if self.channels.get(ch.name) is not ch:
            return None
        if len(events) != through - start + 1:
            self.reset(ch)
            return None
        self.repairs += 1
        self.feed_at(ch, Position(ch.epoch, start), events)
        return ch

    def reset(self, ch: Channel, *, log_holds: int | None = None) -> None:
        """The log is not the one this channel mirrors (a new epoch, or a hole it no longer holds):
        cut the subscribers off so they resume (``runcast.history_lost`` then the snapshot).

        ``log_holds``: the last seq of this channel that is the log's too (this node numbered
        what followed itself while Redis was away, and the log has other events there): the
        subscribers are told to resume from it (``Sink.rewind``), not from what they got."""
        logger.warning("channel %s: the log moved on (new epoch or lost range); resetting", ch.name)
        ch.end_all("lagged", rewind_to=log_holds)
        self._registry.drop(ch)
