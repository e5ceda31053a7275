"""RunPublisher: the creator's ``id:`` lines are the run positions the hub gave each event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.hub import (
    START,
    BufferSink,
    Fence,
    HubEvent,
    HubSettings,
    MemoryBroker,
    Numbered,
    Position,
)
from gateway.runs.feed import CreatorFeed
from gateway.runs.publisher import RunPublisher
from parsers.sse import ServerSentEvent, SSEDecoder


class RoundTripBroker(MemoryBroker):
    """Answers ``publish`` only after other tasks have run, as a networked broker would."""

    async def publish(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        *,
        fence: Fence | None = None,
        first: Numbered | None = None,
    ) -> dict[str, Position]:
        seqs = self.publish_nowait(channels, events, first=first)
        await asyncio.sleep(0)
        return seqs


def decode(data: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(data)
    assert not decoder.close()
    return events


async def drain(feed: CreatorFeed) -> list[ServerSentEvent]:
    feed.finish()
    chunks = []
    while (chunk := await feed.read()) is not None:
        chunks.append(chunk)
    return decode(b"".join(chunks))


async def channel_events(broker: MemoryBroker, channel: str) -> dict[str, bytes]:
    sink = BufferSink()
    await broker.subscribe(channel, sink, since=START)
    return {e.id: e.data_bytes for e in decode(sink.take())}


def event(tag: str, i: int) -> HubEvent:
    return HubEvent("thread.message.delta", b'{"from":"%s","i":%d}' % (tag.encode(), i))


@pytest.mark.asyncio
async def test_creator_ids_are_run_seqs_with_other_publishers_on_the_run() -> None:
    async with RoundTripBroker() as broker:
        feeds = {tag: CreatorFeed(1 << 20) for tag in ("relay", "other")}
        publishers = {
            tag: RunPublisher(broker, feed, run_id="run_1", thread_id="th_1")
            for tag, feed in feeds.items()
        }

        async def pump(tag: str) -> None:
            out = publishers[tag]
            for i in range(0, 30, 3):
                first = await out.emit_batch([event(tag, i), event(tag, i + 1)])
                assert first is not None and out.run_seq() == first + 1
                last = await out.emit(event(tag, i + 2))
                assert last is not None and last > first + 1 and out.run_seq() == last

        await asyncio.gather(pump("relay"), pump("other"))
        run = await channel_events(broker, "run:run_1")
        assert len(run) == 60
        for tag, feed in feeds.items():
            seen = await drain(feed)
            assert len(seen) == 30
            # Every id names the run channel's event that carries the same bytes.
            assert all(run[e.id] == e.data_bytes for e in seen)
            assert all(f'"from":"{tag}"' in e.data for e in seen)
        thread = await channel_events(broker, "thread:th_1")
        assert sorted(thread.values()) == sorted(run.values())


@pytest.mark.asyncio
async def test_without_a_run_id_events_reach_the_thread_and_carry_no_id() -> None:
    async with MemoryBroker() as broker:
        feed = CreatorFeed(1 << 20)
        out = RunPublisher(broker, feed, thread_id="th_1")
        assert await out.emit(HubEvent("thread.created", b"{}")) is None
        assert out.run_seq() is None
        out.run_id = "run_1"
        assert await out.emit(HubEvent("thread.run.created", b"{}")) == 1
        assert await out.emit(HubEvent("runcast.note", b"{}"), to_creator=False) == 2
        out.to_creator(HubEvent("runcast.note", b"{}"), out.run_seq())
        assert await out.emit_batch([]) is None
        assert out.run_seq() == 2
        seen = await drain(feed)
        run = broker.channel_statistics("run:run_1")
        thread = broker.channel_statistics("thread:th_1")
        assert run is not None and thread is not None
        assert [(e.id, e.event) for e in seen] == [
            ("", "thread.created"),
            (f"{run.epoch}-1", "thread.run.created"),
            (f"{run.epoch}-2", "runcast.note"),
        ]
        assert set(await channel_events(broker, "thread:th_1")) == {
            f"{thread.epoch}-{n}" for n in (1, 2, 3)
        }


class _Wire:
    """What reached each socket, in order: a creator's transport and subscribers' sinks."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes]] = []

    def transport(self) -> object:
        wire = self

        class Transport:
            def write(self, data: bytes) -> None:
                wire.writes.append(("creator", data))

            def get_write_buffer_size(self) -> int:
                return 0

            def is_closing(self) -> bool:
                return False

        return Transport()

    def sink(self, name: str) -> BufferSink:
        wire = self

        class Sink(BufferSink):
            def send(self, frames: bytes, last_seq: int) -> bool:
                wire.writes.append((name, frames))
                return super().send(frames, last_seq)

        return Sink()


@pytest.mark.asyncio
async def test_the_creator_is_written_each_batch_before_the_subscribers() -> None:
    wire = _Wire()
    async with MemoryBroker(HubSettings()) as broker:
        await broker.subscribe("run:run_1", wire.sink("run sub"), create=True)
        await broker.subscribe("thread:th_1", wire.sink("thread sub"), create=True)
        feed = CreatorFeed(1 << 20)
        feed.bind(wire.transport())  # type: ignore[arg-type]
        out = RunPublisher(broker, feed, run_id="run_1", thread_id="th_1")
        for i in range(0, 6, 2):
            await out.emit_batch([event("relay", i), event("relay", i + 1)])
    who = [name for name, _ in wire.writes]
    assert who == ["creator", "creator", "run sub", "thread sub"] * 3
    creator = decode(b"".join(_unchunk(d) for n, d in wire.writes if n == "creator"))
    assert [e.id.rpartition("-")[2] for e in creator] == ["1", "2", "3", "4", "5", "6"]


def _unchunk(data: bytes) -> bytes:
    size, _, rest = data.partition(b"\r\n")
    assert rest.endswith(b"\r\n") and len(rest) == int(size, 16) + 2
    return rest[:-2]
