"""RedisBroker: the channel logs in Redis, fanned out on each node by local channels.

The log (numbering, history, epochs, the end of a channel) lives in Redis (``wire.py``); this
process keeps a local :class:`~gateway.hub.channel.Channel` only for the channels it serves, and
those do what they do in memory mode: hold a mirror of the log's tail, fold the reducer, encode each
batch once per frame format and write the same bytes to every local sink. The memory broker's
housekeeping (heartbeats, dead subscribers, idle and retention expiry, the memory budget) is
inherited unchanged.

This module owns the Broker API (publish, subscribe, close, snapshot, channel info, statistics)
and the broker's two tasks; it builds one of each collaborator and wires them:

- ``log.py``: the connections by role and every command sent to Redis;
- ``local.py``: the local channels, mirrored from the log (a first subscriber's read, live
  batches applied in order, gaps repaired, resets);
- ``follower.py``: the follower task reading the live channel, and the position check;
- ``outage.py``: Redis unreachable: the held tail, the degraded/restored notices, the re-append.

A publish also feeds the publishing node's own local channel (created by its first publish)
when the batch continues it (the live echo is then dropped as already held), so a node sees its
own events at once and its reducer sees the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence

import msgspec
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError

from gateway.errors import BrokerUnavailable, SubscriberError
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
    StaleFence,
)
from gateway.hub.channel import check_names
from gateway.hub.memory import MemoryBroker, MemorySubscription
from gateway.hub.redis.follower import Follower
from gateway.hub.redis.local import LocalChannels, Registry
from gateway.hub.redis.log import RedisLog
from gateway.hub.redis.outage import Outage, unreachable
from gateway.hub.redis.tail import TailLimits
from gateway.hub.redis.wire import Keys, encode_batch

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
"""Socket timeout of the publisher and read connections (redis-py 8's default, kept explicit);
also how long a publish this node cannot hold retries, and the last re-append on close."""


class RedisBroker(MemoryBroker):
    """:class:`~gateway.hub.broker.Broker` over Redis ``redis://HOST:PORT/DB``. Use as an async
    context manager: entering connects and starts the follower. A Redis refusing the password or
    the commands raises out of it; one unreachable does not: the broker starts unavailable
    (:meth:`unavailable`) and the follower connects once Redis answers."""

    def __init__(
        self,
        url: str,
        settings: HubSettings | None = None,
        *,
        reducer_factory: ReducerFactory | None = None,
        node_id: str | None = None,
        prefix: str = "rc",
        position_check: float = 10.0,
        tail_limits: TailLimits | None = None,
    ) -> None:
        super().__init__(settings, reducer_factory=reducer_factory)
        self.node_id = node_id or secrets.token_hex(4)
        self._log = RedisLog(url, Keys(prefix), self.settings, read_timeout=READ_TIMEOUT)
        self._local = LocalChannels(
            Registry(
                channels=self._channels,
                settings=self.settings,
                reducers=self._reducer_factory,
                budget=self._budget,
                counters=self._counters,
                now=self._start,
                subscribed=self.subscribed,
                check_pending_room=self._check_pending_room,
                register=self._register,
                evict=self._evict,
                drop=self._drop_channel,
            ),
            self._log,
        )
        self._outage = Outage(self._local, self._log, tail_limits)
        self._follower = Follower(
            self._local, self._log, self._outage, position_check=position_check
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def reconnects(self) -> int:
        """Times the live connection was lost and re-established."""
        return self._follower.reconnects

    @property
    def repairs(self) -> int:
        """Gaps filled from the log (live messages lost or late)."""
        return self._local.repairs

    @property
    def round_trips(self) -> int:
        """Calls to Redis (a pipeline counts once), for ``statistics()`` and the metrics."""
        return self._log.round_trips

    @property
    def errors(self) -> int:
        """Calls to Redis that failed, and losses of the live connection."""
        return self._log.errors

    @property
    def reappended(self) -> int:
        """Held events re-appended to the log once Redis was back."""
        return self._outage.reappended

    @property
    def retries_landed(self) -> int:
        """Appends found already in the log (a retry whose first attempt landed): skipped."""
        return self._outage.retries_landed

    @property
    def fenced_out(self) -> int:
        """Held events refused at re-append: their run was taken over meanwhile."""
        return self._outage.fenced_out

    def unavailable(self) -> str | None:
        """Why this node cannot use Redis right now (a readiness check), or None: the live
        connection is being re-established, or appends failed (and events are held)."""
        return self._outage.unavailable()

    async def __aenter__(self) -> RedisBroker:
        self._start()
        try:
            await self._log.open()
        except (RedisError, OSError) as exc:
            # Redis not up yet (a cluster whose Redis starts after its nodes): the node starts
            # unready, as during an outage, and the follower subscribes once Redis answers. A
            # refusal that waiting does not mend (a wrong password, ACLs) stops the start.
            if isinstance(exc, AuthenticationError | AuthorizationError) or not unreachable(exc):
                raise
            logger.warning("Redis unreachable at start (%s); not ready until it answers", exc)
            self._outage.live_lost()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follower.run(), name="runcast-redis-follower"),
            loop.create_task(self._outage.reappend(), name="runcast-redis-reappend"),
        ]
        return self

    # -- Broker ---------------------------------------------------------------------------------

    async def publish(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        *,
        fence: Fence | None = None,
        first: Numbered | None = None,
    ) -> dict[str, Position]:
        self._start()
        if not events:
            return {}
        check_names(events)
        for name in channels:
            if "\n" in name or "\r" in name:
                raise ValueError(f"channel name must not contain CR or LF: {name!r}")
        body = encode_batch(events)
        token = secrets.token_hex(4)
        nbytes = sum(len(e.data) for e in events)
        log, local, outage = self._log, self._local, self._outage
        tails = outage.tails
        local.hold(channels)
        try:
            while True:
                self._start()
                if outage.publisher_down or any(tails.holds(name) for name in channels):
                    if outage.holdable(channels):
                        if tails.room(channels, len(events), nbytes):
                            held = outage.hold(channels, events, token, fence)
                            if first is not None:
                                first(held)
                            return held
                        await tails.changed()  # the bound: wait for the re-append to make room
                        continue
                    if any(tails.holds(name) for name in channels):
                        await tails.changed()  # not ours to number: after what is held, in order
                        continue
                calls = [
                    log.append_call(name, events, body, token, fence=fence) for name in channels
                ]
                try:
                    results = await log.evalsha(calls)
                    break
                except (RedisError, OSError) as exc:
                    if not unreachable(exc):
                        raise
                    outage.lost_publisher(exc)
                    if outage.holdable(channels):
                        continue
                try:
                    results = await outage.append_retrying(calls)
                    break
                except RedisError as exc:
                    outage.append_down = True
                    raise BrokerUnavailable(f"the Redis broker could not append: {exc}") from exc
            outage.append_down = False
            if fence is not None and any(result is None for result in results):
                raise StaleFence(f"the lease on {fence.key} has a newer holder than {fence.token}")
            out: dict[str, Position] = {}
            loading = local.loading
            for name, (epoch, seq, status) in zip(channels, results, strict=True):
                if int(status) == 1:
                    outage.retries_landed += 1
                out[name] = Position(epoch.decode(), int(seq))
            try:
                if first is not None:
                    first(out)  # the publisher's own copy before this node's subscribers
            finally:
                unheld: list[str] = []
                for name, position in out.items():
                    ch = self._channels.get(name)
                    if ch is None and name not in loading:
                        if position.seq > 1:
                            unheld.append(name)  # the log holds more of it than this batch
                            continue
                        # The publishing node holds what it publishes, as memory mode does (its
                        # reducer sees the whole run; channel_statistics answers without a round
                        # trip).
                        ch = local.create(name, position.epoch, self._start())
                        ch.start_after(position.seq - 1)
                        self._register(ch, pending=False)
                    if ch is not None and not loading.get(name):
                        local.feed_at(ch, position, events)
                for name in unheld:
                    # Taken over, or reset after Redis lost its log: held from the log, whole, as a
                    # subscriber's node holds it. A channel started at this batch would answer
                    # resumes and snapshots from part of it, unlike every other node.
                    with contextlib.suppress(SubscriberError):
                        await local.mirror(name, create=False, owner=None)
            return out
        finally:
            await local.release(channels)  # live batches held back meanwhile, after ours

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
        if since is not None and since.seq < 0:
            raise SubscriberError(400, "invalid_since", "since must be >= 0")
        await self._local.mirror(channel, create=create, owner=owner)
        sub = await super().subscribe(
            channel, sink, since=since, snapshot=snapshot, create=create, owner=owner
        )
        self._outage.attached(channel, sink)
        return sub

    async def close_channel(self, channel: str) -> None:
        outage = self._outage
        tails = outage.tails
        while True:
            self._start()
            held_here = tails.holds(channel)
            if (outage.publisher_down or held_here) and outage.holdable([channel]):
                break
            if held_here:
                await tails.changed()
                continue
            try:
                await self._log.evalsha([self._log.close_call(channel)])
                return
            except (RedisError, OSError) as exc:
                if not unreachable(exc):
                    raise
                outage.lost_publisher(exc)
                if not outage.holdable([channel]):
                    raise
        outage.hold_close(channel)

    async def snapshot(self, channel: str) -> Snapshot | None:
        if not await self._mirrored(channel):
            return None
        return await super().snapshot(channel)

    async def held(self, channel: str) -> ChannelStatistics | None:
        if not await self._mirrored(channel):
            return None
        return self.channel_statistics(channel)

    async def _mirrored(self, channel: str) -> bool:
        """Whether ``channel`` is held here once read from the log (False: no node has it)."""
        try:
            await self._local.mirror(channel, create=False, owner=None)
        except SubscriberError as exc:
            if exc.status != 404:
                raise
            return False
        return True

    async def channel_info(self, channel: str) -> ChannelStatistics | None:
        epoch, last, end = await self._log.read_meta(channel)
        if epoch is None:
            return None
        local = self._channels.get(channel)
        if local is not None and local.epoch == epoch.decode():
            stats = local.statistics()
            return ChannelStatistics(
                **{
                    **{f: getattr(stats, f) for f in stats.__struct_fields__},
                    "last_seq": int(last),
                    "ended": end is not None,
                }
            )
        return ChannelStatistics(
            name=channel,
            epoch=epoch.decode(),
            last_seq=int(last),
            first_seq=int(last) + 1,
            history_events=0,
            history_bytes=0,
            subscribers=0,
            ended=end is not None,
            events_published=0,
            bytes_published=0,
            lagged=0,
            disconnected=0,
        )

    def statistics(self) -> BrokerStatistics:
        return msgspec.structs.replace(
            super().statistics(), round_trips=self._log.round_trips, errors=self._log.errors
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        tails = self._outage.tails
        try:
            if tails.events or len(tails):
                await self._outage.last_reappend()
            await super().aclose()
            tails.wake()  # publishes waiting for room now raise (the broker is closed)
        finally:
            await self._log.aclose()
