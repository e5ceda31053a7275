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

An append while Redis refuses connections (a restart) is tried again with backoff for up to
``READ_TIMEOUT`` seconds before the publish fails; ``unavailable()`` is this node's readiness
check meanwhile.

Connections by role (redis-py 8 defaults would cut blocking reads at 5 s and retry them): the
publisher and the reads keep a 5 s socket timeout; the live subscriber has none and a health check.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from gateway.errors import SubscriberError
from gateway.hub.broker import (
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
MAX_BACKOFF = 5.0


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
    ) -> None:
        super().__init__(settings, reducer_factory=reducer_factory)
        self.node_id = node_id or secrets.token_hex(4)
        self._keys = Keys(prefix)
        self._position_check = position_check
        self._publisher = aioredis.Redis.from_url(
            url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=READ_TIMEOUT
        )
        self._reads = aioredis.Redis.from_url(
            url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=READ_TIMEOUT
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

    def unavailable(self) -> str | None:
        """Why this node cannot use Redis right now (a readiness check), or None: the live
        connection is being re-established, or the last append failed."""
        if self._live_down:
            return "broker: Redis live connection lost, reconnecting"
        if self._append_down:
            return "broker: Redis append failed"
        return None

    async def __aenter__(self) -> RedisBroker:
        self._start()
        await self._load_scripts()
        await self._pubsub.subscribe(self._keys.live)
        self._follower = asyncio.get_running_loop().create_task(
            self._follow(), name="runcast-redis-follower"
        )
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
        s = self.settings
        ttl = int(max(s.idle_ttl, s.retention)) + 1
        body = encode_batch(events)
        pairs: list[str | bytes] = []
        for e in events:
            pairs += (e.name, e.data)
        k = self._keys
        fenced, token = ([fence.key], [fence.token]) if fence is not None else ([], [])
        try:
            results = await self._append_retrying(
                self._append_sha,
                [
                    (
                        [k.meta(name), k.log(name), *fenced],
                        [
                            k.live,
                            secrets.token_hex(4),
                            s.max_history_events,
                            ttl,
                            name,
                            len(events),
                            body,
                            *pairs,
                            *token,
                        ],
                    )
                    for name in channels
                ],
            )
        except RedisError as exc:
            self._append_down = True
            raise RuntimeError(f"the Redis broker could not append: {exc}") from exc
        self._append_down = False
        if fence is not None and any(result is None for result in results):
            raise StaleFence(f"the lease on {fence.key} has a newer holder than {fence.token}")
        out: dict[str, Position] = {}
        for name, (epoch, first) in zip(channels, results, strict=True):
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
        return await super().subscribe(
            channel, sink, since=since, snapshot=snapshot, create=create, owner=owner
        )

    async def close_channel(self, channel: str) -> None:
        k = self._keys
        s = self.settings
        args = [k.live, int(s.retention) + 1, channel]
        await self._evalsha_all(self._close_sha, [([k.meta(channel), k.log(channel)], args)])

    async def snapshot(self, channel: str) -> Snapshot | None:
        try:
            await self._mirror(channel, create=False, owner=None)
        except SubscriberError:
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
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            await asyncio.wait([follower])
        try:
            await super().aclose()
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
        """One round trip for every call (a pipeline of EVALSHA); scripts are loaded again once
        when Redis lost them (a restart)."""
        for attempt in (0, 1):
            async with self._publisher.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                self.round_trips += 1
                try:
                    return list(await self._counted(pipe.execute()))
                except NoScriptError:
                    if attempt:
                        raise
            await self._load_scripts()
        raise AssertionError("unreachable")

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
            async with self._reads.pipeline(transaction=True) as pipe:
                pipe.hmget(k.meta(name), "ep", "s", "end")
                pipe.xrevrange(k.log(name), "+", "-", count=self.settings.max_history_events)
                self.round_trips += 1
                (epoch, last, end), entries = await self._counted(pipe.execute())
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
        names = [n for n, ch in self._channels.items() if not ch.pending]
        if not names:
            return
        async with self._reads.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(self._keys.meta(name), "ep", "s", "end")
            self.round_trips += 1
            metas = await self._counted(pipe.execute())
        for name, (epoch, last, end) in zip(names, metas, strict=True):
            ch = self._channels.get(name)
            if ch is None or name in self._loading:
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
                self._live_down = False
            except (RedisError, OSError) as exc:
                self._live_down = True
                self.reconnects += 1
                self.errors += 1
                logger.warning("Redis live connection: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except ValueError:
                logger.exception("unreadable live message; ignored")
