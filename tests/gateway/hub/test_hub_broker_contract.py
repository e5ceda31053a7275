"""The Broker contract, run against every broker through one factory fixture (``make_broker``).

Everything here goes through :class:`gateway.hub.Broker` and ``BufferSink`` only, so a broker whose
log sits across a network (its calls await, its live events arrive later) passes the same tests as
memory mode. Deliveries are awaited with :func:`delivered`, never assumed to be synchronous.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hub_helpers import MakeBroker, ev

from gateway.errors import SubscriberError
from gateway.hub import START, Broker, BufferSink, HubEvent, Position
from parsers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.asyncio

RUN = "run:contract"
THREAD = "thread:contract"


class Reader:
    """A BufferSink with its decoded events accumulated."""

    def __init__(self, sink: BufferSink | None = None) -> None:
        self.sink = sink or BufferSink(buffer_limit=64 << 20)
        self.events: list[ServerSentEvent] = []
        self._decoder = SSEDecoder()

    def read(self) -> list[ServerSentEvent]:
        self.events.extend(self._decoder.feed(self.sink.take()))
        return self.events

    def numbered(self) -> list[ServerSentEvent]:
        return [e for e in self.read() if not e.event.startswith("runcast.")]

    def seqs(self) -> list[int]:
        return [int(e.id.rpartition("-")[2]) for e in self.numbered()]


async def delivered(reader: Reader, n: int, timeout: float = 5.0) -> list[ServerSentEvent]:
    """Wait until ``reader`` holds ``n`` events (notices included)."""
    async with asyncio.timeout(timeout):
        while len(reader.read()) < n:
            await asyncio.sleep(0.005)
    return reader.events


async def info_of(broker: Broker, channel: str) -> tuple[str, int]:
    info = await broker.channel_info(channel)
    assert info is not None
    return info.epoch, info.last_seq


async def test_publish_returns_contiguous_positions_in_one_epoch(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        a = await broker.publish([RUN], [ev(1), ev(2)])
        b = await broker.publish([RUN, THREAD], [ev(3), ev(4), ev(5)])
        assert a[RUN].seq == 1 and b[RUN].seq == 3 and b[THREAD].seq == 1
        assert a[RUN].epoch == b[RUN].epoch != ""
        assert await info_of(broker, RUN) == (a[RUN].epoch, 5)
        assert await info_of(broker, THREAD) == (b[THREAD].epoch, 3)
        assert await broker.publish([RUN], []) == {}
        assert await broker.channel_info("run:none") is None


async def test_resume_replays_exactly_after_a_position(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        first = (await broker.publish([RUN], [ev(i) for i in range(1, 6)]))[RUN]
        for since in (0, 2, 5):
            reader = Reader()
            sub = await broker.subscribe(RUN, reader.sink, since=Position(first.epoch, since))
            await delivered(reader, 5 - since)
            assert reader.seqs() == list(range(since + 1, 6))
            assert {e.id.rpartition("-")[0] for e in reader.numbered()} <= {first.epoch}
            sub.close()


async def test_another_epoch_or_a_bare_number_gets_history_lost_then_the_snapshot(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        epoch = (await broker.publish([RUN], [ev(1, "a"), ev(2, "b")]))[RUN].epoch
        for since in (Position("elsewhere", 1), Position("", 2)):
            reader = Reader()
            await broker.subscribe(RUN, reader.sink, since=since)
            lost, snap = await delivered(reader, 2)
            assert lost.event == "runcast.history_lost"
            body = json.loads(lost.data)
            assert (body["since"], body["epoch"], body["last_seq"]) == (str(since), epoch, 2)
            assert (snap.event, snap.id) == ("runcast.snapshot", f"{epoch}-2")
            assert json.loads(snap.data)["epoch"] == epoch


async def test_snapshot_first_then_live(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        epoch = (await broker.publish([RUN], [ev(1, "a"), ev(2, "b")]))[RUN].epoch
        reader = Reader()
        await broker.subscribe(RUN, reader.sink, snapshot=True)
        await broker.publish([RUN], [ev(3, "c")])
        snap, live = await delivered(reader, 2)
        assert json.loads(snap.data) == {
            "epoch": epoch,
            "seq": 2,
            "snapshot": {"count": 2, "names": ["a", "b"]},
        }
        assert (live.id, live.event) == (f"{epoch}-3", "c")
        snapshot = await broker.snapshot(RUN)
        assert snapshot is not None and (snapshot.epoch, snapshot.seq) == (epoch, 3)
        assert await broker.snapshot("run:none") is None


async def test_live_only_then_close_ends_subscribers_and_keeps_history(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        await broker.publish([RUN], [ev(1)])
        live = Reader()
        await broker.subscribe(RUN, live.sink)
        await broker.publish([RUN], [ev(2), HubEvent("done", b"[DONE]")])
        await broker.close_channel(RUN)
        async with asyncio.timeout(5):
            assert await live.sink.wait() == "ended"
        assert live.seqs() == [2, 3]
        late = Reader()
        await broker.subscribe(RUN, late.sink, since=START)
        async with asyncio.timeout(5):
            assert await late.sink.wait() == "ended"
        assert [e.event for e in late.numbered()] == ["tick", "tick", "done"]
        info = await broker.channel_info(RUN)
        assert info is not None and info.ended


async def test_publishing_reopens_an_ended_channel(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        await broker.publish([RUN], [ev(1)])
        await broker.close_channel(RUN)
        await broker.publish([RUN], [ev(2)])
        reader = Reader()
        await broker.subscribe(RUN, reader.sink, since=START)
        await delivered(reader, 2)
        assert reader.sink.end_reason is None
        assert reader.seqs() == [1, 2]


async def test_unknown_channels_and_pending_ones(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("run:nope", BufferSink())
        assert (info.value.status, info.value.code) == (404, "unknown_channel")
        reader = Reader()
        await broker.subscribe(THREAD, reader.sink, create=True)
        await broker.publish([THREAD], [ev(1), ev(2)])
        await delivered(reader, 2)
        assert reader.seqs() == [1, 2]


async def test_replay_then_live_has_no_gap_and_no_duplicate_under_concurrent_publishing(
    make_broker: MakeBroker,
) -> None:
    """Subscribers join at random positions while batches keep coming: each sees every seq after
    its position exactly once, in order, whatever the broker awaits in between."""
    rng = random.Random(7)
    async with make_broker(max_history_events=100_000) as broker:
        epoch = (await broker.publish([THREAD], [ev(0)]))[THREAD].epoch
        stop = asyncio.Event()
        published = 1

        async def publisher() -> None:
            nonlocal published
            i = 0
            while not stop.is_set():
                size = rng.randint(1, 4)
                await broker.publish([THREAD], [ev(i + k) for k in range(size)])
                published += size
                i += size
                await asyncio.sleep(0)

        task = asyncio.create_task(publisher())
        readers: list[tuple[int, Reader]] = []
        try:
            for _ in range(12):
                await asyncio.sleep(rng.random() * 0.01)
                since = rng.randint(0, published)
                reader = Reader()
                await broker.subscribe(THREAD, reader.sink, since=Position(epoch, since))
                readers.append((since, reader))
        finally:
            stop.set()
            await task
        total = published
        for since, reader in readers:
            async with asyncio.timeout(5):
                while len(reader.numbered()) < total - since:
                    await asyncio.sleep(0.005)
            assert reader.seqs() == list(range(since + 1, total + 1))


async def test_first_sees_the_positions_before_any_subscriber_here_is_written(
    make_broker: MakeBroker,
) -> None:
    """``first`` (the publisher's own copy, a run's creator) comes before this node's subscribers
    of every channel of the batch, with the positions publish returns."""
    async with make_broker() as broker:
        run, thread = Reader(), Reader()
        await broker.subscribe(RUN, run.sink, create=True)
        await broker.subscribe(THREAD, thread.sink, create=True)
        seen: list[tuple[dict[str, Position], int]] = []

        def first(positions: object) -> None:
            assert isinstance(positions, dict)
            seen.append((dict(positions), len(run.read()) + len(thread.read())))

        for i in range(3):
            positions = await broker.publish([RUN, THREAD], [ev(2 * i), ev(2 * i + 1)], first=first)
            assert seen[-1] == (dict(positions), 2 * 2 * i)  # none of this batch written yet
            await delivered(run, 2 * i + 2)
            await delivered(thread, 2 * i + 2)
        assert len(seen) == 3
