"""RedisBroker: the channel logs in Redis, fanned out on each node by local channels.

The log (numbering, history, epochs, the end of a channel) lives in Redis (``wire.py``); this
process keeps a local :class:`~gateway.hub.channel.Channel` only for the channels it serves, and
those do what they do in memory mode: hold a mirror of the log's tail, fold the reducer, encode each
batch once per frame format and write the same bytes to every local sink. The memory broker's
housekeeping (heartbeats, dead subscribers, idle and retention expiry, the memory budget) is
inherited unchanged.

Feeding the local channels:

- One follower task per node reads the cluster's live channel (one ``PUBLISH`` per batch) and
  applies each batch to the local channel it names, in order. A batch that does not continue the
  local seq is a gap: the missing range is read from the log (``XRANGE``) before it is applied, so
  local subscribers never see a hole. A batch already held is dropped.
- A node's first subscriber to a channel mirrors it: the live messages for that channel are held
  back while its meta and the log's tail are read (one ``MULTI``), then applied on top; the
  subscriber is attached to the local channel without an ``await`` in between (memory mode's
  replay-then-live), so it gets no gap and no duplicate whatever the reads awaited.
- A publish also feeds the publishing node's own local channel (created by its first publish)
  when the batch continues it (the live echo is then dropped as already held), so a node sees its
  own events at once and its reducer sees the whole run.
- Every ``position_check`` seconds, and after the live connection comes back (redis-py
  resubscribes silently and what was published meanwhile is lost), every local channel is compared
  with its meta: a missing tail is read from the log (a lost final event), a new epoch resets the
  channel (its subscribers' streams end as lagging ones do, WebSocket 1013, and their resume
  gets ``runcast.history_lost`` and the snapshot).

Redis unreachable (refused, reset, or no reply within ``READ_TIMEOUT``): a publish to channels
this node holds is numbered here, delivered to the local subscribers at once and held in a
bounded tail per channel (``tail.py``; past the bound the publish waits); a task re-appends it in
order at those seqs once Redis answers (a retry whose first attempt landed is skipped by its
token), so the other nodes' followers find it in the log; a channel's close is held after its
last batch. A publish to a channel this node cannot number (it holds no mirror of it) is tried
again with backoff for up to ``READ_TIMEOUT`` seconds, then fails; so does a first subscriber's
mirror read (503 ``broker_unavailable``). Every local subscriber gets one ``runcast.degraded``
when the outage begins (the publisher or the live connection lost Redis; one attaching during it
too) and ``runcast.restored`` when it is over; ``unavailable()`` is this node's readiness check
meanwhile. Reconnects and re-appends back off up to ``MAX_BACKOFF``.

Connections by role (redis-py 8 defaults would cut blocking reads at 5 s and retry them): the
publisher and the reads keep a 5 s socket timeout and retry only refused or reset connections;
the live subscriber has no socket timeout and a health check.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import SubscriberError
from gateway.hub.broker import (
    DEGRADED_EVENT,
    RESTORED_EVENT,
    BrokerStatistics,
    ChannelStatistics,
    Fence,
    HubEvent,
    HubSettings,
    Position,
    ReducerFactory,
    Sink,
    Snapshot,
    StaleFence,
)
from gateway.hub.channel import Channel, check_names, stored_events
from gateway.hub.memory import MemoryBroker, MemorySubscription
from gateway.hub.redis.tail import Held, TailLimits, Tails
from gateway.hub.redis.wire import (
    APPEND,
    CLOSE,
    Keys,
    LiveMessage,
    decode_batch,
    encode_batch,
    parse_live,
)

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

READ_TIMEOUT = 5.0
"""Socket timeout of the publisher and read connections (redis-py 8's default, kept explicit)."""
HEALTH_CHECK = 15.0
"""PING period of the idle live connection, so a dead one is noticed (redis-py health check)."""
MAX_BACKOFF = 1.0
"""Longest wait between reconnect (or re-append) attempts: one attempt a second per node costs
Redis nothing, and the end of an outage is noticed within a second."""
REAPPEND_BATCHES = 64
"""Held batches re-appended per round trip (one pipeline)."""
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures after which an append may be held and tried again (Redis down, or too slow)."""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class RedisBroker(MemoryBroker):
    """:class:`~gateway.hub.broker.Broker` over Redis ``redis://HOST:PORT/DB``. Use as an async
    context manager: entering connects and starts the follower (errors come out of it)."""

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
        self._keys = Keys(prefix)
        self._position_check = position_check
        self._publisher = aioredis.Redis.from_url(
            url,
            socket_timeout=READ_TIMEOUT,
            socket_connect_timeout=READ_TIMEOUT,
            retry=_connection_retry(),
        )
        self._reads = aioredis.Redis.from_url(
            url,
            socket_timeout=READ_TIMEOUT,
            socket_connect_timeout=READ_TIMEOUT,
            retry=_connection_retry(),
        )
        self._live = aioredis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=READ_TIMEOUT,
            health_check_interval=HEALTH_CHECK,
        )
        self._pubsub = self._live.pubsub()
        self._append_sha = _sha(APPEND)
        self._close_sha = _sha(CLOSE)
        self._loading: dict[str, list[LiveMessage]] = {}
        self._loaded: dict[str, asyncio.Event] = {}
        self._follower: asyncio.Task[None] | None = None
        self.reconnects = 0
        """Times the live connection was lost and re-established."""
        self.repairs = 0
        """Gaps filled from the log (live messages lost or late)."""
        self.round_trips = 0
        """Calls to Redis (a pipeline counts once), for ``statistics()`` and the metrics."""
        self.errors = 0
        """Calls to Redis that failed, and losses of the live connection."""
        self._live_down = False
        self._append_down = False
        self._publisher_down = False
        """An append or close failed for want of Redis; cleared by the re-append task."""
        self._degraded_since: float | None = None
        """Unix time the current outage began (notices were sent), None while connected."""
        self._tails = Tails(tail_limits)
        self._reappender: asyncio.Task[None] | None = None
        self.reappended = 0
        """Held events re-appended to the log once Redis was back."""
        self.retries_landed = 0
        """Appends found already in the log (a retry whose first attempt landed): skipped."""

    def unavailable(self) -> str | None:
        """Why this node cannot use Redis right now (a readiness check), or None: the live
        connection is being re-established, or appends failed (and events are held)."""
        why: list[str] = []
        if self._live_down:
            why.append("live connection lost, reconnecting")
        if self._append_down or self._publisher_down or len(self._tails):
            why.append(f"append failed, {self._tails.events} events held for re-append")
        return "broker: Redis " + "; ".join(why) if why else None

    async def __aenter__(self) -> RedisBroker:
        self._start()
        await self._load_scripts()
        await self._pubsub.subscribe(self._keys.live)
        loop = asyncio.get_running_loop()
        self._follower = loop.create_task(self._follow(), name="runcast-redis-follower")
        self._reappender = loop.create_task(self._reappend(), name="runcast-redis-reappend")
        return self

    # -- Broker ---------------------------------------------------------------------------------

    async def publish(
        self, channels: Sequence[str], events: Sequence[HubEvent], *, fence: Fence | None = None
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
        tails = self._tails
        while True:
            self._start()
            if self._publisher_down or any(tails.holds(name) for name in channels):
                if self._holdable(channels):
                    if tails.room(channels, len(events), nbytes):
                        return self._hold(channels, events, token)
                    await tails.changed()  # the bound: wait for the re-append to make room
                    continue
                if any(tails.holds(name) for name in channels):
                    await tails.changed()  # not ours to number: after what is held, in order
                    continue
            calls = [self._append_call(name, events, body, token, fence=fence) for name in channels]
            try:
                results = await self._evalsha_all(self._append_sha, calls)
                break
            except UNREACHABLE as exc:
                self._lost_publisher(exc)
                if self._holdable(channels):
                    continue
            try:
                results = await self._append_retrying(self._append_sha, calls)
                break
            except RedisError as exc:
                self._append_down = True
                raise RuntimeError(f"the Redis broker could not append: {exc}") from exc
        self._append_down = False
        if fence is not None and any(result is None for result in results):
            raise StaleFence(f"the lease on {fence.key} has a newer holder than {fence.token}")
        out: dict[str, Position] = {}
        for name, (epoch, first, status) in zip(channels, results, strict=True):
            if int(status) == 1:
                self.retries_landed += 1
            position = Position(epoch.decode(), int(first))
            out[name] = position
            ch = self._channels.get(name)
            if ch is None and name not in self._loading:
                # The publishing node holds what it publishes, as memory mode does (its reducer
                # sees the whole run; channel_statistics answers without a round trip).
                ch = self._local(name, position.epoch, self._start())
                ch.start_after(position.seq - 1)
                self._register(ch, pending=False)
            if ch is not None and not self._loading.get(name):
                self._continue(ch, position, events)
        return out

    def _append_call(
        self,
        name: str,
        events: Sequence[HubEvent],
        body: bytes,
        token: str,
        at: Position | None = None,
        fence: Fence | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one ``APPEND`` (``at``: the seq this node numbered it;
        ``fence``: refused if the run's lease has a newer holder)."""
        s = self.settings
        k = self._keys
        pairs: list[str | bytes] = []
        for e in events:
            pairs += (e.name, e.data)
        return (
            [k.meta(name), k.log(name), *([fence.key] if fence is not None else [])],
            [
                k.live,
                secrets.token_hex(4),
                s.max_history_events,
                int(max(s.idle_ttl, s.retention)) + 1,
                name,
                len(events),
                body,
                token,
                at.epoch if at is not None else "",
                at.seq if at is not None else 0,
                *pairs,
                *([fence.token] if fence is not None else []),
            ],
        )

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
        await self._mirror(channel, create=create, owner=owner)
        sub = await super().subscribe(
            channel, sink, since=since, snapshot=snapshot, create=create, owner=owner
        )
        since_t = self._degraded_since
        ch = self._channels.get(channel)
        if since_t is not None and ch is not None:
            ch.notify(DEGRADED_EVENT, _degraded(since_t), self._start(), only=sink)
        return sub

    async def close_channel(self, channel: str) -> None:
        while True:
            self._start()
            held_here = self._tails.holds(channel)
            if (self._publisher_down or held_here) and self._holdable([channel]):
                break
            if held_here:
                await self._tails.changed()
                continue
            try:
                await self._evalsha_all(self._close_sha, [self._close_call(channel)])
                return
            except UNREACHABLE as exc:
                self._lost_publisher(exc)
                if not self._holdable([channel]):
                    raise
        # Held after the channel's last batch; its subscribers here are told at once.
        ch = self._channels[channel]
        self._tails.add(Held(channel, ch.epoch, ch.last_seq + 1, (), ""))
        ch.end(self._start())
        self._budget.ended(ch)

    def _close_call(self, channel: str) -> tuple[list[str], list[Any]]:
        k = self._keys
        return (
            [k.meta(channel), k.log(channel)],
            [k.live, int(self.settings.retention) + 1, channel],
        )

    async def snapshot(self, channel: str) -> Snapshot | None:
        try:
            await self._mirror(channel, create=False, owner=None)
        except SubscriberError as exc:
            if exc.status != 404:
                raise
            return None
        return await super().snapshot(channel)

    async def channel_info(self, channel: str) -> ChannelStatistics | None:
        self.round_trips += 1
        meta: Any = await self._counted(
            self._reads.hmget(self._keys.meta(channel), "ep", "s", "end")
        )
        epoch, last, end = meta
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

    async def aclose(self) -> None:
        if self._closed:
            return
        tasks = [t for t in (self._follower, self._reappender) if t is not None]
        self._follower = self._reappender = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        try:
            if self._tails.events or len(self._tails):
                await self._last_reappend()
            await super().aclose()
            self._tails.wake()  # publishes waiting for room now raise (the broker is closed)
        finally:
            await self._pubsub.aclose()
            for client in (self._live, self._reads, self._publisher):
                await client.aclose()

    # -- the log --------------------------------------------------------------------------------

    async def _load_scripts(self) -> None:
        for script in (APPEND, CLOSE):
            await self._publisher.script_load(script)

    async def _append_retrying(
        self, sha: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """:meth:`_evalsha_all`, tried again with backoff for up to ``READ_TIMEOUT`` seconds while
        Redis refuses connections (a restart), so a running run rides it out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT
        delay = 0.05
        while True:
            try:
                return await self._evalsha_all(sha, calls)
            except RedisConnectionError:
                if loop.time() + delay > deadline:
                    raise
            self._append_down = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _evalsha_all(
        self, sha: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """One round trip for every call of script ``sha`` (:meth:`_evalsha_mixed`)."""
        return await self._evalsha_mixed([(sha, call) for call in calls])

    async def _counted(self, call: Awaitable[T]) -> T:
        """Await one call to Redis, counting it in ``errors`` when it fails."""
        try:
            return await call
        except (RedisError, OSError):
            self.errors += 1
            raise

    def statistics(self) -> BrokerStatistics:
        return msgspec.structs.replace(
            super().statistics(), round_trips=self.round_trips, errors=self.errors
        )

    async def _read_log(self, channel: str, first: int, last: int) -> list[HubEvent]:
        self.round_trips += 1
        entries: Any = await self._counted(
            self._reads.xrange(self._keys.log(channel), f"{first}-0", f"{last}-0")
        )
        return [HubEvent(f[b"e"].decode(), f[b"d"]) for _, f in entries]

    # -- local channels -------------------------------------------------------------------------

    async def _mirror(self, name: str, *, create: bool, owner: str | None) -> None:
        """Make sure this node holds a local channel for ``name`` fed from the log."""
        while name in self._loaded:
            await self._loaded[name].wait()
        if name in self._channels:
            return
        self._loading[name] = []
        done = self._loaded[name] = asyncio.Event()
        try:
            k = self._keys
            try:
                async with self._reads.pipeline(transaction=True) as pipe:
                    pipe.hmget(k.meta(name), "ep", "s", "end")
                    pipe.xrevrange(k.log(name), "+", "-", count=self.settings.max_history_events)
                    self.round_trips += 1
                    (epoch, last, end), entries = await self._counted(pipe.execute())
            except (RedisError, OSError) as exc:
                # Only a channel this node already holds can be served while Redis is away.
                raise SubscriberError(
                    503, "broker_unavailable", f"the cluster's Redis is unreachable: {exc}"
                ) from exc
            now = self._start()
            if epoch is None:
                if not create:
                    raise SubscriberError(404, "unknown_channel", f"no such stream: {name}")
                self._check_pending_room(owner)
                ch = self._local(name, "", now)
                self._register(ch, pending=True, owner=owner)
            else:
                ch = self._local(name, epoch.decode(), now)
                entries.reverse()
                held = [HubEvent(f[b"e"].decode(), f[b"d"]) for _, f in entries]
                first = int(last) - len(held) + 1
                ch.start_after(first - 1)
                self._register(ch, pending=False)
                if held:
                    self._feed(ch, held)
                if end is not None and int(end) == ch.last_seq:
                    ch.end(now)
                    self._budget.ended(ch)
            buffered = self._loading[name]
            while buffered:
                await self._apply(buffered.pop(0), held=True)
        finally:
            self._loading.pop(name, None)
            del self._loaded[name]
            done.set()

    def _local(self, name: str, epoch: str, now: float) -> Channel:
        return Channel(
            name, self.settings, self._counters, self._reducer_factory(name), now=now, epoch=epoch
        )

    def _feed(self, ch: Channel, events: Sequence[HubEvent]) -> None:
        budget = self._budget
        reopened = ch.ended
        ch.publish(events, self._start(), stored=stored_events(events), gen=budget.next_gen())
        if reopened or not ch.in_budget_heap:
            budget.published(ch, reopened=reopened)
        if self._counters.retained_bytes > budget.limit:
            budget.enforce(self._evict)

    def _continue(self, ch: Channel, at: Position, events: Sequence[HubEvent]) -> bool:
        """Feed ``events`` (first at ``at``) when they continue the local channel; else False."""
        if ch.pending and ch.last_seq == 0:
            ch.epoch = at.epoch
        if at.epoch != ch.epoch or at.seq != ch.last_seq + 1:
            return False
        self._feed(ch, events)
        return True

    async def _apply(self, m: LiveMessage, *, held: bool = False) -> None:
        """Apply a live message to its local channel (``held``: one held back while mirroring)."""
        if not held and m.channel in self._loading:
            self._loading[m.channel].append(m)
            return
        ch = self._channels.get(m.channel)
        if ch is None:
            return
        if ch.pending and ch.last_seq == 0:
            ch.epoch = m.epoch
        if m.epoch != ch.epoch:
            self._reset(ch)
            return
        if m.kind == b"P":
            events = decode_batch(m.body)
            last = m.seq + len(events) - 1
            if last <= ch.last_seq:
                return
            if m.seq > ch.last_seq + 1:
                ch = await self._repair(ch, m.seq - 1)
                if ch is None:
                    return
            self._continue(
                ch, Position(m.epoch, ch.last_seq + 1), events[ch.last_seq + 1 - m.seq :]
            )
        else:
            if m.seq > ch.last_seq:
                ch = await self._repair(ch, m.seq)
                if ch is None:
                    return
            ch.end(self._start())
            self._budget.ended(ch)

    async def _repair(self, ch: Channel, through: int) -> Channel | None:
        """Fill the local channel from the log up to ``through``; None if the log no longer holds
        the range (the channel is reset)."""
        start = ch.last_seq + 1
        events = await self._read_log(ch.name, start, through)
        if self._channels.get(ch.name) is not ch:
            return None
        if len(events) != through - start + 1:
            self._reset(ch)
            return None
        self.repairs += 1
        self._continue(ch, Position(ch.epoch, start), events)
        return ch

    def _reset(self, ch: Channel) -> None:
        """The log is not the one this channel mirrors (a new epoch, or a hole it no longer holds):
        cut the subscribers off so they resume (``runcast.history_lost`` then the snapshot)."""
        logger.warning("channel %s: the log moved on (new epoch or lost range); resetting", ch.name)
        ch.end_all("lagged")
        self._drop_channel(ch)

    async def _check_positions(self) -> None:
        """Compare every local channel with its meta; repair what the live path missed."""
        # A channel with a held tail is ahead of its log by design: the re-append settles it.
        names = [
            n for n, ch in self._channels.items() if not ch.pending and not self._tails.holds(n)
        ]
        if not names:
            return
        async with self._reads.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(self._keys.meta(name), "ep", "s", "end")
            self.round_trips += 1
            metas = await self._counted(pipe.execute())
        for name, (epoch, last, end) in zip(names, metas, strict=True):
            ch = self._channels.get(name)
            if ch is None or name in self._loading or self._tails.holds(name):
                continue
            if epoch is None or epoch.decode() != ch.epoch:
                if not ch.ended or epoch is not None:
                    self._reset(ch)
                continue
            if int(last) > ch.last_seq:
                repaired = await self._repair(ch, int(last))
                if repaired is None:
                    continue
            if end is not None and int(end) == ch.last_seq and not ch.ended:
                ch.end(self._start())
                self._budget.ended(ch)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        check_at = loop.time() + self._position_check
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None:
                    if message["type"] == "message":
                        await self._apply(parse_live(message["data"]))
                    elif message["type"] == "subscribe":
                        # (Re)subscribed: what was published while disconnected is lost.
                        await self._check_positions()
                if loop.time() >= check_at:
                    check_at = loop.time() + self._position_check
                    await self._check_positions()
                backoff = 0.1
                if self._live_down:
                    self._live_down = False
                    self._update_degraded()
            except (RedisError, OSError) as exc:
                if not self._live_down:
                    self._live_down = True
                    self._update_degraded()
                self.reconnects += 1
                self.errors += 1
                logger.warning("Redis live connection: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except ValueError:
                logger.exception("unreadable live message; ignored")

    # -- Redis unreachable: the held tail and the notices --------------------------------------

    def _holdable(self, channels: Sequence[str]) -> bool:
        """Whether this node can number a batch for every one of ``channels`` itself: it holds
        them with a known epoch (it has published to them or mirrors them), none still loading."""
        for name in channels:
            ch = self._channels.get(name)
            if ch is None or ch.pending or not ch.epoch or name in self._loading:
                return False
        return True

    def _hold(
        self, channels: Sequence[str], events: Sequence[HubEvent], token: str
    ) -> dict[str, Position]:
        """Number the batch here, deliver it to this node's subscribers and hold it."""
        stored = stored_events(events)
        out: dict[str, Position] = {}
        for name in channels:
            ch = self._channels[name]
            at = Position(ch.epoch, ch.last_seq + 1)
            self._feed(ch, events)
            out[name] = at
            self._tails.add(Held(name, at.epoch, at.seq, stored, token))
        self._update_degraded()
        return out

    def _lost_publisher(self, exc: BaseException) -> None:
        if not self._publisher_down:
            logger.warning("Redis append failed (%s); holding what is published here", exc)
            self._publisher_down = True
            self._tails.work.set()
            self._update_degraded()

    def _update_degraded(self) -> None:
        """Tell every local subscriber once when an outage begins and when it is over."""
        down = self._live_down or self._publisher_down or len(self._tails) > 0
        since = self._degraded_since
        if down == (since is not None):
            return
        now = self._start()
        if down:
            since = self._degraded_since = time.time()
            notice = (DEGRADED_EVENT, _degraded(since))
        else:
            assert since is not None
            self._degraded_since = None
            notice = (RESTORED_EVENT, b'{"since":%.3f}' % since)
        for ch in list(self._channels.values()):
            ch.notify(*notice, now)

    async def _reappend(self) -> None:
        """Re-append what is held, in order, once Redis answers again (the task of ``tail.py``)."""
        tails = self._tails
        backoff = 0.05
        while True:
            await tails.work.wait()
            try:
                if len(tails):
                    await self._reappend_some(tails.heads(REAPPEND_BATCHES))
                else:
                    self.round_trips += 1
                    await self._counted(self._publisher.ping())
                if not len(tails):
                    # Redis answered and nothing is held: appends go to Redis again.
                    self._publisher_down = False
                    tails.work.clear()
                    self._update_degraded()
                backoff = 0.05
            except (RedisError, OSError) as exc:
                logger.warning(
                    "Redis re-append of %d held events: %s; retrying in %.1f s",
                    tails.events,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _reappend_some(self, batch: Sequence[Held]) -> None:
        calls: list[tuple[str, tuple[list[str], list[Any]]]] = []
        for held in batch:
            if held.is_close:
                calls.append((self._close_sha, self._close_call(held.channel)))
            else:
                at = Position(held.epoch, held.first)
                body = encode_batch(held.events)  # again: holding it would double the memory
                call = self._append_call(held.channel, held.events, body, held.token, at)
                calls.append((self._append_sha, call))
        results = await self._evalsha_mixed(calls)
        for held, result in zip(batch, results, strict=True):
            self._tails.done(held)
            if held.is_close:
                continue
            if int(result[2]) == 1:
                self.retries_landed += 1
                continue
            self.reappended += len(held.events)
            if int(result[2]) == 2:
                # The log moved on (Redis lost it, or others appended there): what this node
                # numbered is not the log's numbering; its subscribers resume from the log.
                ch = self._channels.get(held.channel)
                if ch is not None and ch.epoch == held.epoch:
                    self._reset(ch)

    async def _evalsha_mixed(
        self, calls: Sequence[tuple[str, tuple[list[str], list[Any]]]]
    ) -> list[Any]:
        """One round trip for every ``(script sha, (keys, args))`` call (a pipeline of EVALSHA);
        scripts are loaded again once when Redis lost them (a restart)."""
        for attempt in (0, 1):
            async with self._publisher.pipeline(transaction=False) as pipe:
                for sha, (keys, args) in calls:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                self.round_trips += 1
                try:
                    return list(await self._counted(pipe.execute()))
                except NoScriptError:
                    if attempt:
                        raise
            await self._load_scripts()
        raise AssertionError("unreachable")

    async def _last_reappend(self) -> None:
        """The broker closes with something held: one bounded try, then it is lost (logged)."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                while len(self._tails):
                    await self._reappend_some(self._tails.heads(REAPPEND_BATCHES))
        except (RedisError, OSError, TimeoutError) as exc:
            lost = self._tails.clear()
            logger.error("closing with Redis unreachable (%s): %d held events lost", exc, lost)


def _degraded(since: float) -> bytes:
    return b'{"reason":"redis_unreachable","since":%.3f}' % since


def _connection_retry() -> Retry:
    """redis-py's retry for the publisher and the reads: a refused or reset connection is tried
    again at once (a retried append that had landed is recognised by its token), a timeout is not
    (redis-py 8 would send the command ten times, ~50 s): the caller decides (a publish holds its
    batch, a read answers 503)."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.25),
        3,
        supported_errors=(RedisConnectionError,),
    )
