"""RedisBroker beyond the shared contract: lost live messages, the position check, a new epoch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from hub_helpers import counting_reducer, ev, settings
from redis_server import RedisServer

from gateway.hub import START, BufferSink, HubEvent, Position
from gateway.hub.broker import Fence, StaleFence
from gateway.hub.redis import RedisBroker
from gateway.hub.redis.log import RedisLog
from gateway.hub.redis.wire import APPEND, Keys, encode_batch
from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio

RUN = "run:r1"


@pytest_asyncio.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    redis_server.flush()
    async with RedisBroker(
        redis_server.url, settings(), reducer_factory=counting_reducer, position_check=0.3
    ) as b:
        yield b


async def append_unannounced(url: str, channel: str, events: list[HubEvent]) -> None:
    """Append to the log as a publisher would, but announce on a channel nobody reads: what a
    node sees when a live message is lost."""
    keys = Keys("rc")
    client = aioredis.Redis.from_url(url)
    pairs: list[str | bytes] = []
    for e in events:
        pairs += (e.name, e.data)
    await client.eval(
        APPEND, 2, keys.meta(channel), keys.log(channel),
        "rc:nowhere", "ignored", 1000, 60, channel, len(events), encode_batch(events),
        "token", "", 0, *pairs,
    )  # fmt: skip
    await client.aclose()


def seqs(sink: BufferSink) -> list[int]:
    return [
        int(e.id.rpartition("-")[2])
        for e in SSEDecoder().feed(sink.take())
        if not e.event.startswith("runcast.")
    ]


async def until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_lost_live_message_is_repaired_from_the_log(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    await broker.publish([RUN], [ev(1)])
    sink = BufferSink()
    await broker.subscribe(RUN, sink)
    await append_unannounced(redis_server.url, RUN, [ev(2), ev(3)])
    await broker.publish([RUN], [ev(4)])
    await until(lambda: sink.last_seq == 4)
    assert seqs(sink) == [2, 3, 4]
    assert broker.repairs >= 1


async def test_a_lost_final_event_is_found_by_the_position_check(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    await broker.publish([RUN], [ev(1)])
    sink = BufferSink()
    await broker.subscribe(RUN, sink)
    await append_unannounced(redis_server.url, RUN, [HubEvent("done", b"[DONE]")])
    await until(lambda: sink.last_seq == 2)
    assert seqs(sink) == [2]


async def test_a_log_lost_in_redis_gets_a_new_epoch_and_subscribers_resume_into_history_lost(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    old = (await broker.publish([RUN], [ev(1, "a"), ev(2, "b")]))[RUN]
    sink = BufferSink()
    await broker.subscribe(RUN, sink)
    redis_server.flush()  # what a restart without persistence leaves
    new = (await broker.publish([RUN], [ev(3, "c")]))[RUN]
    assert new.seq == 1 and new.epoch != old.epoch
    await until(lambda: sink.end_reason == "lagged")
    resumed = BufferSink()
    await broker.subscribe(RUN, resumed, since=Position(old.epoch, 2))
    lost, snap = SSEDecoder().feed(resumed.take())
    assert lost.event == "runcast.history_lost"
    assert json.loads(lost.data)["epoch"] == new.epoch
    assert (snap.event, snap.id) == ("runcast.snapshot", f"{new.epoch}-1")


async def test_one_round_trip_per_published_batch(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    """A batch to two channels is one pipelined round trip: two EVALSHA in one transaction."""
    client = aioredis.Redis.from_url(redis_server.url)
    await broker.publish([RUN, "thread:t"], [ev(0)])
    await client.config_resetstat()
    before = broker.statistics()
    for i in range(10):
        await broker.publish([RUN, "thread:t"], [ev(i), ev(i + 1)])
    after = broker.statistics()
    # Counted for /metrics: at least one per batch (the position check may add its own).
    assert after.round_trips - before.round_trips >= 10 and after.errors == before.errors
    stats = await client.info("commandstats")
    await client.aclose()
    calls = {k: v["calls"] for k, v in stats.items()}
    assert calls.get("cmdstat_evalsha") == 20
    scripted = {"hget", "hset", "hincrby", "hdel", "xadd", "expire", "publish", "del"}
    # multi/exec: a batch's appends see one lease; hmget: the position check.
    ours = {"evalsha", "multi", "exec", "config|resetstat", "info", "hmget"}
    assert {k.removeprefix("cmdstat_") for k in calls} <= scripted | ours
    assert calls["cmdstat_publish"] == 20  # one announcement per channel and batch
    assert calls["cmdstat_exec"] == 10


async def test_a_redis_restart_is_survived_and_changes_the_epoch(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    old = (await broker.publish([RUN], [ev(1, "a")]))[RUN]
    sink = BufferSink()
    await broker.subscribe(RUN, sink)
    redis_server.stop()
    await asyncio.sleep(0.3)
    redis_server.start()
    async with asyncio.timeout(20):
        while True:
            try:
                new = (await broker.publish([RUN], [ev(2, "b")]))[RUN]
                break
            except RuntimeError:  # still reconnecting
                await asyncio.sleep(0.2)
    assert new.epoch != old.epoch and new.seq == 1
    assert broker.statistics().errors > 0  # the calls that met the stopped server
    await until(lambda: sink.end_reason == "lagged", timeout=20)
    # The follower is back: a later publish reaches a new subscriber on this node live.
    live = BufferSink()
    await broker.subscribe(RUN, live)
    await broker.publish([RUN], [ev(3, "c")])
    await until(lambda: live.last_seq == 2, timeout=20)


async def test_the_periodic_check_compares_subscribed_channels_and_a_slice_of_the_rest(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node mirrors every channel it served until its retention ends: the periodic check
    compares the channels with a subscriber every time and the others a slice at a time (all
    of them once the live connection comes back), in pipelines of at most POSITION_SLICE."""
    from gateway.hub.redis import follower
    from gateway.hub.redis.log import RedisLog

    monkeypatch.setattr(follower, "POSITION_SLICE", 10)
    redis_server.flush()
    async with RedisBroker(
        redis_server.url, settings(), reducer_factory=counting_reducer, position_check=3600
    ) as broker:
        for i in range(35):
            await broker.publish([f"run:{i}"], [ev(1)])
        sink = BufferSink()
        await broker.subscribe("run:7", sink)
        reads: list[list[str]] = []
        read_metas = RedisLog.read_metas

        async def recorded(log: RedisLog, channels: list[str]) -> list[object]:
            reads.append(list(channels))
            return await read_metas(log, channels)

        monkeypatch.setattr(RedisLog, "read_metas", recorded)
        checks = broker._follower
        seen: set[str] = set()
        for _ in range(4):
            reads.clear()
            await checks.check_positions()
            compared = [n for chunk in reads for n in chunk]
            assert "run:7" in compared and len(compared) <= 11
            assert all(len(chunk) <= 10 for chunk in reads)
            seen.update(compared)
        assert seen == {f"run:{i}" for i in range(35)}  # one round covers every channel
        reads.clear()
        await checks.check_positions(everything=True)
        assert sorted(n for chunk in reads for n in chunk) == sorted(f"run:{i}" for i in range(35))
        assert all(len(chunk) <= 10 for chunk in reads)


async def test_a_private_server_never_takes_a_port_another_server_holds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The test servers' own guard: a port taken between choosing and binding it (another
    server's here) is left to its holder, never shared."""
    other = RedisServer(tmp_path)
    other.port, other.url = redis_server.port, redis_server.url
    other.start()
    try:
        assert other.port != redis_server.port and other.process is not None
        assert redis.Redis(port=other.port).info("server")["process_id"] == other.process.pid
    finally:
        other.stop()


async def test_more_concurrent_publishes_than_pooled_connections_all_land(
    broker: RedisBroker,
) -> None:
    """300 relays publishing at once (a busy node) wait for a pooled connection; none fails."""
    channels = [f"run:c{i}" for i in range(300)]
    await asyncio.gather(*(broker.publish([name], [ev(0), ev(1)]) for name in channels))
    for name in channels:
        stats = broker.channel_statistics(name)
        assert stats is not None and stats.last_seq == 2
    assert broker.statistics().errors == 0


async def test_the_publishers_copy_comes_first_when_the_live_batch_beats_the_append_answer(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The append's answer is read 0.1 s late (a busy node): the batch it announced on the live
    # channel reaches the follower first. It is held back until the publisher has its own copy
    # (first=), then fed once: no subscriber here before the creator, no duplicate.
    sink = BufferSink()
    await broker.subscribe(RUN, sink, create=True)
    real = RedisLog.evalsha

    async def late_answer(self: RedisLog, calls: list[Any]) -> Any:
        results = await real(self, calls)
        await asyncio.sleep(0.1)
        return results

    monkeypatch.setattr(RedisLog, "evalsha", late_answer)
    written_at_first: list[int] = []
    for n in range(1, 4):
        positions = await broker.publish(
            [RUN], [ev(n)], first=lambda _: written_at_first.append(sink.last_seq)
        )
        assert positions[RUN].seq == n
        await until(lambda n=n: sink.last_seq == n)  # type: ignore[misc]
    assert written_at_first == [0, 1, 2]
    assert seqs(sink) == [1, 2, 3]


async def test_a_channel_reopened_while_a_node_mirrors_it_is_not_ended_by_the_older_end(
    broker: RedisBroker, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Node B's first subscriber mirrors the channel; while B reads its tail, A ends the channel
    # and reopens it. B's tail already holds the reopening batch; the older end, applied after
    # it from the live messages held back meanwhile, must not end the channel again.
    async with RedisBroker(
        redis_server.url, settings(), reducer_factory=counting_reducer, position_check=0.3
    ) as other:
        await broker.publish([RUN], [ev(1)])
        real = RedisLog.read_tail

        async def late_tail(self: RedisLog, channel: str) -> Any:
            await asyncio.sleep(0.3)
            return await real(self, channel)

        monkeypatch.setattr(RedisLog, "read_tail", late_tail)
        sink = BufferSink()
        subscribing = asyncio.create_task(other.subscribe(RUN, sink, since=START))
        await asyncio.sleep(0.05)
        await broker.close_channel(RUN)
        await broker.publish([RUN], [ev(2)])
        await subscribing
        await until(lambda: sink.last_seq == 2)
        await asyncio.sleep(0.1)
        assert sink.end_reason is None
        assert seqs(sink) == [1, 2]


async def test_the_broker_stops_when_redis_py_spends_its_tasks_cancellation(
    redis_server: RedisServer,
) -> None:
    """redis-py, cancelled while it reads a reply, finishes the read and returns it: the task's
    one cancellation is spent. The follower and the re-append task must stop all the same."""
    redis_server.flush()
    broker = RedisBroker(redis_server.url, settings(), position_check=0.3)
    await broker.__aenter__()
    log = broker._log
    reads = {"get_message": 0, "ping": 0}

    def swallowing(name: str, read: Any) -> Any:
        async def spent(*args: Any, **kwargs: Any) -> Any:
            reads[name] += 1
            try:
                return await read(*args, **kwargs)
            except asyncio.CancelledError:
                return None  # what redis-py does with a reply in flight

        return spent

    async def slow_ping() -> None:
        await asyncio.sleep(0.5)  # a reply in flight when the broker closes

    log.pubsub.get_message = swallowing("get_message", log.pubsub.get_message)  # type: ignore[method-assign]
    log.ping = swallowing("ping", slow_ping)  # type: ignore[method-assign]
    broker._outage.tails.work.set()  # the re-append task pings Redis to learn it is back
    await until(lambda: reads["get_message"] and reads["ping"])
    async with asyncio.timeout(5):
        await broker.aclose()


async def test_a_node_publishing_to_a_channel_it_does_not_hold_serves_all_of_it(
    redis_server: RedisServer, broker: RedisBroker
) -> None:
    # A run taken over (or a channel reset after Redis lost its log) is published to by a node
    # that holds none of it: the channel it made started at that batch, so its resumes got
    # runcast.history_lost and its snapshot a part of what every other node served.
    epoch = (await broker.publish([RUN], [ev(1), ev(2)]))[RUN].epoch
    async with RedisBroker(
        redis_server.url, settings(), reducer_factory=counting_reducer, position_check=0.3
    ) as taker:
        assert (await taker.publish([RUN], [ev(3)]))[RUN].seq == 3
        sink = BufferSink()
        await taker.subscribe(RUN, sink, since=Position(epoch, 0))
        assert seqs(sink) == [1, 2, 3]
        async with asyncio.timeout(5):  # the first node has the third event from the live channel
            while (held := broker.channel_statistics(RUN)) is None or held.last_seq < 3:
                await asyncio.sleep(0.01)
        assert (await taker.snapshot(RUN)) == (await broker.snapshot(RUN))


@pytest.mark.parametrize("publisher", ["this node", "another node"])
async def test_notices_to_a_subscriber_that_came_first_name_the_epoch_the_log_began_with(
    broker: RedisBroker, redis_server: RedisServer, publisher: str
) -> None:
    # Subscribed before the channel's first event (a thread between runs), the subscriber had
    # no epoch yet; the shutdown notice must still name a position it can resume from.
    sink = BufferSink()
    await broker.subscribe(RUN, sink, create=True)
    if publisher == "this node":
        positions = await broker.publish([RUN], [ev(1), ev(2)])
    else:
        async with RedisBroker(redis_server.url, settings()) as other:
            positions = await other.publish([RUN], [ev(1), ev(2)])
    await until(lambda: sink.last_seq == 2)
    await broker.aclose()
    (notice,) = [e for e in SSEDecoder().feed(sink.take()) if e.event == "runcast.shutdown"]
    assert json.loads(notice.data)["epoch"] == positions[RUN].epoch != ""


async def test_a_fenced_batch_to_two_channels_lands_on_both_or_neither(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    """The lease changes hands while batches go to a response's channel and a named one: each
    batch is on both channels or on neither. Redis reads a large pipeline 16 KiB at a time and
    runs other clients' commands in between: a lease taken over between a batch's two appends
    put it on one channel only (the named channel then lacked events the other held)."""
    fence = Fence("rc:test:lease", 2)
    flipper = aioredis.Redis.from_url(redis_server.url)
    await flipper.set(fence.key, "2|node-a")
    big = [HubEvent("response.output_text.delta", b'"%s"' % (b"x" * 1500)) for _ in range(24)]
    named = "channel:session-1"
    stop = asyncio.Event()

    async def flip() -> None:
        # Another node takes the lease and hands it back, over and over.
        while not stop.is_set():
            await flipper.set(fence.key, "3|node-b")
            await flipper.set(fence.key, "2|node-a")

    flipping = asyncio.create_task(flip())
    refused = 0
    try:
        for _ in range(150):
            try:
                await broker.publish([RUN, named], big, fence=fence)
            except StaleFence:
                refused += 1
            lengths = [await flipper.xlen(Keys("rc").log(name)) for name in (RUN, named)]
            assert lengths[0] == lengths[1], (lengths, refused)
    finally:
        stop.set()
        await flipping
        await flipper.aclose()
    assert refused > 0  # the lease did change hands during the batches
