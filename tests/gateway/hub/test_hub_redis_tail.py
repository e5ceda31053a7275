"""RedisBroker while Redis is unreachable: the idempotent append, the held tail and its bound,
the ``runcast.degraded`` / ``runcast.restored`` notices. Against a real ``redis-server``, stopped
(saving its data, so it comes back as it was) or paused (SIGSTOP: replies are lost)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from hub_helpers import counting_reducer, ev, settings
from redis_server import RedisServer, emptied

from gateway.errors import BrokerUnavailable, SubscriberError
from gateway.hub import BufferSink, Fence, HubEvent, Position
from gateway.hub.redis import RedisBroker
from gateway.hub.redis import broker as broker_module
from gateway.hub.redis.outage import Outage
from gateway.hub.redis.tail import Held, TailLimits, Tails
from gateway.hub.redis.wire import APPEND, Keys, encode_batch
from parsers.sse import ServerSentEvent as SSEEvent
from parsers.sse import SSEDecoder

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

RUN = "run:r1"
KEYS = Keys("rc")


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield from emptied(redis_server)


@pytest_asyncio.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(server.url)
    yield c
    await c.aclose()


def node(server: RedisServer, **kwargs: Any) -> RedisBroker:
    return RedisBroker(
        server.url, settings(), reducer_factory=counting_reducer, position_check=0.3, **kwargs
    )


def frames(sink: BufferSink) -> list[SSEEvent]:
    return decode(sink.take())


def decode(raw: bytes) -> list[SSEEvent]:
    return SSEDecoder().feed(raw)


def notices_have_no_id(raw: bytes) -> bool:
    """Notices are outside the seq space: no ``id:`` line (the client's position stays put)."""
    blocks = [b for b in raw.split(b"\n\n") if b.startswith(b"event: runcast.")]
    return bool(blocks) and not any(b"\nid:" in b for b in blocks)


def seqs(events: list[SSEEvent]) -> list[int]:
    return [int(e.id.rpartition("-")[2]) for e in events if not e.event.startswith("runcast.")]


def names(events: list[SSEEvent]) -> list[str]:
    return [e.event for e in events]


def gated_reappend(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every re-append until the returned event is set."""
    gate = asyncio.Event()
    reappend = Outage._reappend_some

    async def gated(self: Outage, batch: Sequence[Held]) -> None:
        await gate.wait()
        await reappend(self, batch)

    monkeypatch.setattr(Outage, "_reappend_some", gated)
    return gate


async def until(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def append(
    client: aioredis.Redis, events: list[HubEvent], token: str, epoch: str, first: int
) -> list[Any]:
    pairs: list[str | bytes] = []
    for e in events:
        pairs += (e.name, e.data)
    result: list[Any] = await client.eval(  # type: ignore[misc]
        APPEND, 2, KEYS.meta(RUN), KEYS.log(RUN),
        "rc:live", "newepoch", 1000, 60, RUN, len(events), encode_batch(events),
        token, epoch, first, *pairs,
    )  # fmt: skip
    return [r.decode() if isinstance(r, bytes) else r for r in result]


async def test_an_append_retried_after_it_landed_is_skipped_not_doubled(
    server: RedisServer, client: aioredis.Redis
) -> None:
    announced: list[bytes] = []
    live = client.pubsub()
    await live.subscribe("rc:live")
    async with node(server) as b:
        epoch = (await b.publish([RUN], [ev(1)]))[RUN].epoch
    # Two batches numbered by their publisher (2, then 3-4), sent in one go; then the whole
    # pipeline again, as after a reply lost on the way back.
    assert await append(client, [ev(2)], "t2", epoch, 2) == [epoch, 2, 0]
    assert await append(client, [ev(3), ev(4)], "t3", epoch, 3) == [epoch, 3, 0]
    assert await append(client, [ev(2)], "t2", epoch, 2) == [epoch, 2, 1]  # found by its entry
    assert await append(client, [ev(3), ev(4)], "t3", epoch, 3) == [epoch, 3, 1]  # by the meta
    # Redis-numbered (no wanted seq): a retry of the last batch is found by the meta's token.
    assert await append(client, [ev(5)], "t5", "", 0) == [epoch, 5, 0]
    assert await append(client, [ev(5)], "t5", "", 0) == [epoch, 5, 1]
    # Another node's batch wanting seqs already taken is appended after them, and says so.
    assert await append(client, [ev(9)], "other", epoch, 2) == [epoch, 6, 2]
    # A log that lost its epoch (a restart) numbers a held batch in its new one.
    await client.delete(KEYS.meta(RUN))
    assert await append(client, [ev(7)], "t7", epoch, 7) == ["newepoch", 1, 2]
    async with asyncio.timeout(5):
        while len(announced) < 6:
            message = await live.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                announced.append(message["data"])
    await live.aclose()
    entries = await client.xrange(KEYS.log(RUN))
    assert [e[0] for e in entries] == [b"1-0"]  # the new epoch's log
    # One announcement per batch appended: the retries announced nothing.
    firsts = [m.split(b"\n")[3] for m in announced]
    assert firsts == [b"1", b"2", b"3", b"5", b"6", b"1"]


async def test_a_publish_whose_reply_is_lost_is_held_and_not_appended_twice(
    server: RedisServer, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis paused: the append is sent, its reply never comes. The publish returns at once with
    the seq this node numbered, its subscribers have the event; when Redis resumes it runs the
    first attempt, and the re-append finds it there: every node sees each seq once."""
    monkeypatch.setattr(broker_module, "READ_TIMEOUT", 0.5)
    async with node(server) as a, node(server) as b:
        await a.publish([RUN], [ev(1)])
        here, there = BufferSink(), BufferSink()
        await a.subscribe(RUN, here)
        await b.subscribe(RUN, there)
        server.pause()
        try:
            async with asyncio.timeout(3):
                position = (await a.publish([RUN], [ev(2)]))[RUN]
            assert position.seq == 2
            got = frames(here)
            assert names(got) == ["runcast.degraded", "tick"] and seqs(got) == [2]
            assert a.unavailable() is not None
        finally:
            server.resume()
        await until(lambda: there.last_seq == 2)
        await until(lambda: a.unavailable() is None)
        assert a.retries_landed == 1
        assert seqs(frames(there)) == [2]
        assert names(frames(here)) == ["runcast.restored"]
    assert [e[0] for e in await client.xrange(KEYS.log(RUN))] == [b"1-0", b"2-0"]


async def test_held_tail_is_bounded_reappended_in_order_and_subscribers_told(
    server: RedisServer, client: aioredis.Redis
) -> None:
    """Redis down (its data saved): the owner holds three events (the bound), delivers them to
    its subscriber at once, and the fourth publish waits. Another node's subscriber is told,
    then gets every event in order once Redis is back; both are told the outage is over."""
    limits = TailLimits(max_events=3)
    async with node(server, tail_limits=limits) as a, node(server) as b:
        await a.publish([RUN], [ev(1)])
        here, there = BufferSink(), BufferSink()
        await a.subscribe(RUN, here)
        await b.subscribe(RUN, there)
        server.stop(save=True)
        try:
            for i in (2, 3, 4):
                async with asyncio.timeout(3):
                    assert (await a.publish([RUN], [ev(i)]))[RUN].seq == i
            fourth = asyncio.create_task(a.publish([RUN], [ev(5)]))
            try:
                await asyncio.sleep(0.5)
                assert not fourth.done()  # the bound: no room until the tail is re-appended
                got = frames(here)
                assert seqs(got) == [2, 3, 4]
                assert names(got).count("runcast.degraded") == 1
                assert "3 events held" in (a.unavailable() or "")
                await until(lambda: b.unavailable() is not None)
                late = BufferSink()
                await b.subscribe(RUN, late, since=None)
            finally:
                server.start()
            async with asyncio.timeout(10):
                assert (await fourth)[RUN].seq == 5
        except BaseException:
            if not fourth.done():
                fourth.cancel()
            raise
        await until(lambda: there.last_seq == 5)
        await until(lambda: a.unavailable() is None and b.unavailable() is None)
        await a.close_channel(RUN)
        await until(lambda: there.end_reason == "ended")
        assert seqs(frames(here)) == [5]
        raw = there.take()
        seen = decode(raw)
        assert seqs(seen) == [2, 3, 4, 5]
        assert names(seen)[0] == "runcast.degraded" and "runcast.restored" in names(seen)
        notice = json.loads(seen[0].data)
        assert notice["reason"] == "redis_unreachable" and notice["since"] > 0
        assert notices_have_no_id(raw)
        assert names(frames(late))[0] == "runcast.degraded"  # attached during the outage
        assert a.reappended == 3 and a.statistics().errors > 0
    assert len(await client.xrange(KEYS.log(RUN))) == 5


async def test_closing_while_redis_is_down_ends_every_task_and_waiter(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No crash, no task left behind: a subscriber to a channel this node does not hold is
    answered 503 meanwhile, a publish waiting for room raises once the broker closes, and the
    close gives up on what it holds after one bounded try (logged as lost)."""
    monkeypatch.setattr(broker_module, "READ_TIMEOUT", 0.5)
    a = node(server, tail_limits=TailLimits(max_events=1))
    await a.__aenter__()
    try:
        await a.publish([RUN], [ev(1)])
        server.stop(save=True)
        assert (await a.publish([RUN], [ev(2)]))[RUN].seq == 2
        waiting = asyncio.create_task(a.publish([RUN], [ev(3)]))
        with pytest.raises(SubscriberError) as refused:
            await a.subscribe("run:elsewhere", BufferSink())
        assert (refused.value.status, refused.value.code) == (503, "broker_unavailable")
        await asyncio.sleep(0.2)
        assert not waiting.done()
    finally:
        before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        async with asyncio.timeout(5):
            await a.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    left = {t for t in asyncio.all_tasks() if not t.done()} & before
    assert not [t for t in left if t.get_name().startswith("runcast-")], left


def held(channel: str, first: int, *sizes: int) -> Held:
    return Held(channel, "e", first, [HubEvent("tick", b"x" * n) for n in sizes], f"t{first}")


async def test_tails_bound_by_events_and_bytes_per_channel_and_bytes_in_all() -> None:
    tails = Tails(TailLimits(max_events=3, max_bytes=100, max_total_bytes=150))
    assert tails.room(["a"], 50, 10_000)  # anything fits an empty tail: it must pass at all
    tails.add(held("a", 1, 40, 40))
    assert tails.room(["a"], 1, 20) and not tails.room(["a"], 1, 21)  # bytes per channel
    assert not tails.room(["a"], 2, 1)  # events per channel
    assert tails.room(["b"], 1, 70) and not tails.room(["b"], 1, 71)  # bytes over all channels
    assert not tails.room(["b", "a"], 2, 1)  # every channel of the batch must have room
    tails.add(held("b", 7, 10))
    tails.add(held("a", 3, 5))
    assert (tails.events, tails.nbytes, len(tails)) == (4, 95, 2)
    # Each channel's oldest first, channels taken in turn.
    order = [(h.channel, h.first) for h in tails.heads(10)]
    assert order == [("a", 1), ("b", 7), ("a", 3)]
    assert [(h.channel, h.first) for h in tails.heads(2)] == [("a", 1), ("b", 7)]
    waiter = asyncio.create_task(tails.changed())
    await asyncio.sleep(0)
    for h in tails.heads(10):
        tails.done(h)
    await asyncio.wait_for(waiter, 1)  # a removal wakes the publishes waiting for room
    assert (tails.events, tails.nbytes, len(tails)) == (0, 0, 0) and not tails.work.is_set()


async def test_a_node_whose_publish_gave_up_is_ready_again_once_redis_is_back(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish to a channel this node cannot number itself fails while Redis is away (nothing
    is held); once Redis is back the node is ready again without waiting for another publish
    (a balancer following /readyz would never send it one)."""
    monkeypatch.setattr(broker_module, "READ_TIMEOUT", 0.5)
    async with node(server) as a:
        server.stop(save=True)
        try:
            with pytest.raises(BrokerUnavailable):
                await a.publish(["run:new"], [ev(1)])
            assert "append failed, 0 events held" in (a.unavailable() or "")
        finally:
            server.start()
        await until(lambda: a.unavailable() is None)


async def test_what_the_owner_held_is_refused_once_another_node_took_its_run_over(
    server: RedisServer, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down (its data saved) while the run's owner publishes: it holds a batch and the
    channel's close. Before it reaches Redis again another node takes the run's lease: the held
    batch and close are refused by their fence, as a live publish would be. They were re-appended
    unfenced: the log then held both owners' events, two terminal events and an early end."""
    gate = gated_reappend(monkeypatch)
    fence = Fence("rc:test:lease", 1)
    await client.set(fence.key, "1|node-a")
    async with node(server) as a:
        await a.publish([RUN], [ev(1)], fence=fence)
        server.stop(save=True)
        try:
            async with asyncio.timeout(3):
                assert (await a.publish([RUN], [ev(2)], fence=fence))[RUN].seq == 2
                await a.close_channel(RUN)
        finally:
            server.start()
        await client.set(fence.key, "2|node-b")  # the lease lapsed: another node took it
        gate.set()
        await until(lambda: a.unavailable() is None)
        assert a.fenced_out == 1 and a.reappended == 0
    assert [e[0] for e in await client.xrange(KEYS.log(RUN))] == [b"1-0"]
    assert b"end" not in await client.hgetall(KEYS.meta(RUN))


async def test_subscribers_of_an_owner_fenced_out_are_sent_back_to_what_the_log_holds(
    server: RedisServer, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner delivered seqs 2 and 3 to its own subscriber while Redis was away; another node
    took the run over and wrote its own seq 2 and 3. The subscriber is cut off with its position
    moved back to 1, the log's last that it had: resuming from 3 would have skipped the new
    owner's events (and the thread's next run's) under the same epoch."""
    gate = gated_reappend(monkeypatch)
    fence = Fence("rc:test:lease", 1)
    await client.set(fence.key, "1|node-a")
    sink = BufferSink()
    async with node(server) as a:
        await a.subscribe(RUN, sink, create=True)
        epoch = (await a.publish([RUN], [ev(1)], fence=fence))[RUN].epoch
        server.stop(save=True)
        try:
            async with asyncio.timeout(3):
                assert (await a.publish([RUN], [ev(2), ev(3)], fence=fence))[RUN].seq == 2
        finally:
            server.start()
        await client.set(fence.key, "2|node-b")
        async with node(server) as b:
            await b.publish([RUN], [ev(20), ev(30)])  # the taker's seq 2 and 3
        gate.set()
        await until(lambda: sink.end_reason is not None)
    raw = sink.take()
    events = decode(raw)
    assert seqs(events) == [1, 2, 3]
    notice = events[-1]
    assert notice.event == "runcast.lagged"
    assert notice.id == f"{epoch}-1"  # EventSource resumes from here
    assert (json.loads(notice.data)["epoch"], json.loads(notice.data)["seq"]) == (epoch, 1)
    assert f"since={epoch}-1" in json.loads(notice.data)["error"]["message"]
    # The positions this node handed out are not the log's: the log's epoch is renamed, so none
    # of them can match what the log holds now or later (the thread's next run would reach 3).
    renamed = (await client.hget(KEYS.meta(RUN), "ep")).decode()
    assert renamed != epoch
    late = BufferSink()
    async with node(server) as c:
        await c.subscribe(RUN, late, since=Position(epoch, 3))
        await c.publish([RUN], [ev(4)])
        await until(lambda: b'"i":4' in bytes(late._buffer))
    events = decode(late.take())
    assert events[0].event == "runcast.history_lost"
    assert {e.id.rpartition("-")[0] for e in events if e.id} == {renamed}
