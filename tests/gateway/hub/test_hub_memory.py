"""MemoryBroker and channels with in-memory sinks: numbering, resume, snapshots, limits, expiry."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hub_helpers import CountingReducer, at, counting_reducer, epoch_of, ev, seq_of, settings

from gateway.errors import SubscriberError
from gateway.hub import (
    START,
    BufferSink,
    FrameFormat,
    HubEvent,
    HubSettings,
    MemoryBroker,
    Position,
    Sink,
)
from parsers.sse import ServerSentEvent, SSEDecoder

RUN = "run:r1"
THREAD = "thread:t1"


def events_of(sink: BufferSink) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    out = decoder.feed(sink.take())
    assert not decoder.close()
    return out


def ws_payloads(data: bytes) -> list[object]:
    """The JSON of each unmasked text frame (payloads under 64 KiB)."""
    out: list[object] = []
    pos = 0
    while pos < len(data):
        n, pos = data[pos + 1], pos + 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        out.append(json.loads(data[pos : pos + n]))
        pos += n
    return out


def seqs(events: list[ServerSentEvent]) -> list[int]:
    return [seq_of(e.id) for e in events if not e.event.startswith("runcast.")]


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker(settings(max_history_events=5), reducer_factory=counting_reducer) as b:
        yield b


@pytest.mark.asyncio
async def test_each_channel_numbers_its_own_events(broker: MemoryBroker) -> None:
    run, thread = BufferSink(), BufferSink()
    await broker.publish([RUN], [ev(0)])
    await broker.subscribe(RUN, run, since=START)
    await broker.subscribe(THREAD, thread, create=True)
    await broker.publish([RUN, THREAD], [ev(1), ev(2)])
    await broker.publish([THREAD], [ev(3)])
    assert seqs(events_of(run)) == [1, 2, 3]
    thread_events = events_of(thread)
    assert seqs(thread_events) == [1, 2, 3]
    assert [json.loads(e.data)["i"] for e in thread_events] == [1, 2, 3]
    assert broker.statistics().events_published == 6


@pytest.mark.asyncio
async def test_publish_returns_each_channels_first_seq(broker: MemoryBroker) -> None:
    assert await broker.publish([RUN], [ev(1), ev(2)]) == {RUN: at(broker, RUN, 1)}
    firsts = await broker.publish([RUN, THREAD], [ev(3), ev(4), ev(5)])
    assert firsts == {RUN: at(broker, RUN, 3), THREAD: at(broker, THREAD, 1)}
    assert broker.publish_nowait([THREAD, RUN], [ev(6)]) == {
        THREAD: at(broker, THREAD, 4),
        RUN: at(broker, RUN, 6),
    }
    # Each channel's log has its own epoch.
    assert epoch_of(broker, RUN) != epoch_of(broker, THREAD)
    # An empty batch numbers nothing and makes no channel.
    assert await broker.publish([RUN, "thread:none"], []) == {}
    assert broker.channel_statistics("thread:none") is None
    assert broker.channel_statistics(RUN).last_seq == 6
    sink = BufferSink()
    await broker.subscribe(THREAD, sink, since=START)
    replay = events_of(sink)
    assert seqs(replay) == [1, 2, 3, 4]
    assert [json.loads(e.data)["i"] for e in replay] == [3, 4, 5, 6]


@pytest.mark.asyncio
async def test_returned_seqs_hold_with_interleaved_publishers(broker: MemoryBroker) -> None:
    """Each publisher learns where its own batches went, whatever the others publish."""
    sink = BufferSink()
    await broker.subscribe(THREAD, sink, create=True)
    sent: dict[int, int] = {}

    async def publisher(tag: int) -> None:
        for i in range(20):
            batch = [ev(tag * 100 + i), ev(tag * 100 + i)]
            first = (await broker.publish([THREAD], batch))[THREAD].seq
            sent[first] = sent[first + 1] = tag * 100 + i
            await asyncio.sleep(0)

    await asyncio.gather(*(publisher(tag) for tag in (1, 2, 3)))
    received = {seq_of(e.id): json.loads(e.data)["i"] for e in events_of(sink)}
    assert received == sent
    assert len(sent) == 120


@pytest.mark.asyncio
async def test_one_encoding_per_format_is_shared(broker: MemoryBroker) -> None:
    sinks = [BufferSink(fmt) for fmt in FrameFormat for _ in range(3)]
    for sink in sinks:
        await broker.subscribe(THREAD, sink, create=True)
    received: dict[FrameFormat, list[bytes]] = {fmt: [] for fmt in FrameFormat}

    class Spy(BufferSink):
        def send(self, frames: bytes, last_seq: int) -> bool:
            received[self.frame_format].append(frames)
            return super().send(frames, last_seq)

    for fmt in FrameFormat:
        await broker.subscribe(THREAD, Spy(fmt), create=True)
        await broker.subscribe(THREAD, Spy(fmt), create=True)
    await broker.publish([THREAD], [ev(1), ev(2)])
    for fmt in FrameFormat:
        first, second = received[fmt]
        assert first is second
    by_format = {fmt: {s.take() for s in sinks if s.frame_format is fmt} for fmt in FrameFormat}
    assert all(len(v) == 1 for v in by_format.values())


@pytest.mark.asyncio
async def test_resume_replays_exactly_what_was_missed(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(i) for i in range(1, 5)])
    for since in (0, 2, 4, 5):
        last = broker.channel_statistics(RUN).last_seq
        sink = BufferSink()
        sub = await broker.subscribe(RUN, sink, since=at(broker, RUN, since))
        await broker.publish([RUN], [ev(99)])
        assert seqs(events_of(sink)) == list(range(since + 1, last + 2))
        sub.close()


@pytest.mark.asyncio
async def test_live_only_without_since(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1), ev(2)])
    sink = BufferSink()
    await broker.subscribe(RUN, sink)
    assert sink.take() == b""
    await broker.publish([RUN], [ev(3)])
    assert seqs(events_of(sink)) == [3]


@pytest.mark.asyncio
async def test_evicted_position_gets_notice_then_snapshot(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(i, f"e{i}") for i in range(1, 9)])  # holds 4..8
    sink = BufferSink()
    epoch = epoch_of(broker, RUN)
    await broker.subscribe(RUN, sink, since=at(broker, RUN, 1))
    await broker.publish([RUN], [ev(9, "e9")])
    lost, snap, live = events_of(sink)
    assert lost.event == "runcast.history_lost"
    assert json.loads(lost.data) == {
        "since": f"{epoch}-1",
        "epoch": epoch,
        "first_seq": 4,
        "last_seq": 8,
    }
    assert (snap.event, snap.id) == ("runcast.snapshot", f"{epoch}-8")
    reducer = CountingReducer()
    for i in range(1, 9):
        reducer.apply(HubEvent(f"e{i}", b""))
    assert json.loads(snap.data) == {
        "epoch": epoch,
        "seq": 8,
        "snapshot": json.loads(reducer.snapshot()),
    }
    assert (live.id, live.event) == (f"{epoch}-9", "e9")


@pytest.mark.asyncio
async def test_a_position_of_another_epoch_or_a_bare_number_never_matches(
    broker: MemoryBroker,
) -> None:
    await broker.publish([RUN], [ev(1, "a"), ev(2, "b")])
    epoch = epoch_of(broker, RUN)
    for since in (Position("0ther", 1), Position("", 1), Position(epoch + "x", 2)):
        sink = BufferSink()
        await broker.subscribe(RUN, sink, since=since)
        lost, snap = events_of(sink)
        assert json.loads(lost.data)["since"] == str(since)
        assert (snap.event, snap.id) == ("runcast.snapshot", f"{epoch}-2")
    # Seq 0 is the start of any epoch.
    sink = BufferSink()
    await broker.subscribe(RUN, sink, since=Position("0ther", 0))
    assert seqs(events_of(sink)) == [1, 2]


@pytest.mark.asyncio
async def test_a_channel_created_again_starts_a_new_epoch() -> None:
    async with MemoryBroker(settings(retention=0.05)) as broker:
        await broker.publish([RUN], [ev(1), ev(2), ev(3)])
        old = at(broker, RUN, 2)
        await broker.close_channel(RUN)
        while broker.channel_statistics(RUN) is not None:
            await asyncio.sleep(0.02)
        await broker.publish([RUN], [ev(4), ev(5), ev(6)])
        assert epoch_of(broker, RUN) != old.epoch
        sink = BufferSink()
        await broker.subscribe(RUN, sink, since=old)
        lost, *events = events_of(sink)
        assert lost.event == "runcast.history_lost"
        assert [json.loads(e.data)["i"] for e in events] == [4, 5, 6]


@pytest.mark.asyncio
async def test_position_beyond_the_end_is_lost_too(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1)])
    sink = BufferSink()
    await broker.subscribe(RUN, sink, since=at(broker, RUN, 50))
    lost, snap = events_of(sink)
    epoch = epoch_of(broker, RUN)
    assert json.loads(lost.data) == {
        "since": f"{epoch}-50",
        "epoch": epoch,
        "first_seq": 1,
        "last_seq": 1,
    }
    assert snap.event == "runcast.snapshot"


@pytest.mark.asyncio
async def test_snapshot_first_then_live(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1, "a"), ev(2, "b")])
    sink = BufferSink(FrameFormat.WEBSOCKET)
    await broker.subscribe(RUN, sink, snapshot=True)
    await broker.publish([RUN], [ev(3, "c")])
    first, second = ws_payloads(sink.take())
    epoch = epoch_of(broker, RUN)
    assert first == {
        "epoch": epoch,
        "seq": 2,
        "event": "runcast.snapshot",
        "data": {"epoch": epoch, "seq": 2, "snapshot": {"count": 2, "names": ["a", "b"]}},
    }
    assert second == {
        "epoch": epoch,
        "seq": 3,
        "event": "c",
        "data": {"i": 3},
    }
    snap = await broker.snapshot(RUN)
    assert snap is not None
    assert json.loads(snap.to_json()) == {
        "epoch": epoch,
        "seq": 3,
        "snapshot": {"count": 3, "names": ["a", "b", "c"]},
    }


@pytest.mark.asyncio
async def test_without_reducer_snapshot_falls_back_to_history(broker: MemoryBroker) -> None:
    await broker.publish([THREAD], [ev(i) for i in range(1, 8)])  # holds 3..7, no reducer
    sink = BufferSink()
    await broker.subscribe(THREAD, sink, snapshot=True)
    lost, *rest = events_of(sink)
    assert lost.event == "runcast.history_lost"
    epoch = epoch_of(broker, THREAD)
    assert json.loads(lost.data) == {
        "since": "0",
        "epoch": epoch,
        "first_seq": 3,
        "last_seq": 7,
    }
    assert seqs(rest) == [3, 4, 5, 6, 7]
    sink2 = BufferSink()
    await broker.subscribe(THREAD, sink2, since=at(broker, THREAD, 1))
    lost2, *rest2 = events_of(sink2)
    assert json.loads(lost2.data)["since"] == f"{epoch}-1"
    assert seqs(rest2) == [3, 4, 5, 6, 7]
    assert (await broker.snapshot(THREAD)).data == b"null"


@pytest.mark.asyncio
async def test_a_failing_reducer_skips_the_event_only(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1, "a"), ev(2, "boom"), ev(3, "c")])
    snap = await broker.snapshot(RUN)
    assert json.loads(snap.data) == {"count": 2, "names": ["a", "c"]}
    assert snap.seq == 3


@pytest.mark.asyncio
async def test_a_batch_with_a_bad_event_name_is_refused_whole(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1)])
    with pytest.raises(ValueError, match="CR or LF"):
        await broker.publish([RUN, THREAD], [ev(2), HubEvent("bad\nname", b"{}")])
    assert broker.channel_statistics(RUN).last_seq == 1
    assert broker.channel_statistics(THREAD) is None


@pytest.mark.asyncio
async def test_unknown_channel_and_bad_since(broker: MemoryBroker) -> None:
    with pytest.raises(SubscriberError) as info:
        await broker.subscribe("run:nope", BufferSink())
    assert (info.value.status, info.value.code) == (404, "unknown_channel")
    with pytest.raises(SubscriberError) as info:
        await broker.subscribe(THREAD, BufferSink(), since=Position("", -1), create=True)
    assert info.value.status == 400
    assert await broker.snapshot("run:nope") is None
    assert broker.channel_statistics("run:nope") is None


@pytest.mark.asyncio
async def test_subscriber_limits() -> None:
    async with MemoryBroker(
        settings(max_subscribers_per_channel=2, max_subscribers=3, max_pending_channels=2)
    ) as broker:
        await broker.subscribe("thread:a", BufferSink(), create=True)
        sub = await broker.subscribe("thread:a", BufferSink(), create=True)
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:a", BufferSink(), create=True)
        assert (info.value.status, info.value.code) == (429, "too_many_subscribers")
        await broker.subscribe("thread:b", BufferSink(), create=True)
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:b", BufferSink(), create=True)
        assert info.value.status == 429
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:c", BufferSink(), create=True)
        assert (info.value.status, info.value.code) == (429, "too_many_channels")
        sub.close()
        sub.close()
        await broker.subscribe("thread:b", BufferSink(), create=True)
        assert broker.statistics().subscribers == 3
        # Publishing turns a pending channel into a real one, which frees a pending slot.
        await broker.publish(["thread:a"], [ev(1)])
        assert broker.statistics().pending_channels == 1
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:c", BufferSink(), create=True)
        assert info.value.code == "too_many_subscribers"
        assert broker.channel_statistics("thread:c") is None


@pytest.mark.asyncio
async def test_one_owner_cannot_take_every_pending_channel() -> None:
    async with MemoryBroker(
        settings(max_pending_channels=4, max_pending_channels_per_client=2)
    ) as broker:
        a1 = await broker.subscribe("thread:a1", BufferSink(), create=True, owner="10.0.0.1")
        await broker.subscribe("thread:a2", BufferSink(), create=True, owner="10.0.0.1")
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:a3", BufferSink(), create=True, owner="10.0.0.1")
        assert (info.value.status, info.value.code) == (429, "too_many_channels_per_client")
        # Joining a channel someone else created costs nothing; another client still has room.
        await broker.subscribe("thread:a1", BufferSink(), create=True, owner="10.0.0.1")
        await broker.subscribe("thread:b1", BufferSink(), create=True, owner="10.0.0.2")
        # A first event frees its creator's slot; leaving alone does not (that is the grace).
        await broker.publish(["thread:a2"], [ev(1)])
        await broker.subscribe("thread:a3", BufferSink(), create=True, owner="10.0.0.1")
        a1.close()
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:a4", BufferSink(), create=True, owner="10.0.0.1")
        assert info.value.code == "too_many_channels_per_client"
        assert broker.statistics().pending_channels == 3


@pytest.mark.asyncio
async def test_a_pending_channel_nobody_holds_is_forgotten_after_the_grace() -> None:
    async with MemoryBroker(
        settings(max_pending_channels=2, max_pending_channels_per_client=2, pending_grace=0.1)
    ) as broker:
        subs = [
            await broker.subscribe(f"thread:{n}", BufferSink(), create=True, owner="10.0.0.1")
            for n in ("a", "b")
        ]
        with pytest.raises(SubscriberError) as info:
            await broker.subscribe("thread:c", BufferSink(), create=True, owner="10.0.0.2")
        assert info.value.code == "too_many_channels"
        held = await broker.subscribe("thread:b", BufferSink(), create=True, owner="10.0.0.2")
        for sub in subs:
            sub.close()
        async with asyncio.timeout(5):
            while broker.channel_statistics("thread:a") is not None:
                await asyncio.sleep(0.02)
        # "thread:b" still has a subscriber, so it stays (and still counts); "a" is gone.
        assert broker.statistics().pending_channels == 1
        assert broker.channel_statistics("thread:b") is not None
        await broker.subscribe("thread:c", BufferSink(), create=True, owner="10.0.0.2")
        held.close()


@pytest.mark.asyncio
async def test_closing_a_channel_ends_subscribers_and_keeps_history() -> None:
    async with MemoryBroker(settings(retention=0.2)) as broker:
        sink = BufferSink()
        await broker.subscribe(RUN, sink, create=True)
        await broker.publish([RUN], [ev(1), HubEvent("done", b"[DONE]")])
        await broker.close_channel(RUN)
        assert sink.end_reason == "ended"
        assert await asyncio.wait_for(sink.wait(), 1) == "ended"
        assert seqs(events_of(sink)) == [1, 2]
        late = BufferSink()
        await broker.subscribe(RUN, late, since=START)
        assert late.end_reason == "ended"
        assert [e.event for e in events_of(late)] == ["tick", "done"]
        assert broker.channel_statistics(RUN).ended
        await asyncio.sleep(0.4)
        assert broker.channel_statistics(RUN) is None
        with pytest.raises(SubscriberError):
            await broker.subscribe(RUN, BufferSink(), since=START)
        assert broker.statistics().channels_dropped == 1


@pytest.mark.asyncio
async def test_publishing_reopens_an_ended_channel(broker: MemoryBroker) -> None:
    await broker.publish([RUN], [ev(1)])
    await broker.close_channel(RUN)
    sink = BufferSink()
    await broker.publish([RUN], [ev(2)])
    await broker.subscribe(RUN, sink, since=START)
    assert sink.end_reason is None
    assert seqs(events_of(sink)) == [1, 2]


@pytest.mark.asyncio
async def test_idle_channels_expire_but_not_while_subscribed() -> None:
    async with MemoryBroker(settings(idle_ttl=0.15)) as broker:
        sink = BufferSink()
        sub = await broker.subscribe(THREAD, sink, create=True)
        await broker.publish(["thread:other"], [ev(1)])
        await asyncio.sleep(0.4)
        assert broker.channel_statistics(THREAD) is not None
        assert broker.channel_statistics("thread:other") is None
        sub.close()
        assert sink.end_reason == "detached"
        await asyncio.sleep(0.4)
        assert broker.channel_statistics(THREAD) is None
        assert broker.statistics().pending_channels == 0


@pytest.mark.asyncio
async def test_heartbeats_come_from_the_housekeeping_task() -> None:
    async with MemoryBroker(settings(heartbeat_interval=0.05)) as broker:
        sink = BufferSink()
        await broker.subscribe(THREAD, sink, create=True)
        await asyncio.sleep(0.3)
        assert sink.heartbeats >= 2


@pytest.mark.asyncio
async def test_lagging_sink_is_cut_off_with_its_last_seq(broker: MemoryBroker) -> None:
    slow = BufferSink(buffer_limit=100)
    fast = BufferSink()
    await broker.subscribe(THREAD, slow, create=True)
    await broker.subscribe(THREAD, fast, create=True)
    for _ in range(5):
        await broker.publish([THREAD], [HubEvent("big", b'"%s"' % (b"x" * 40))])
    assert slow.end_reason == "lagged"
    *delivered, lagged = events_of(slow)
    assert lagged.event == "runcast.lagged"
    last = delivered[-1].id
    payload = json.loads(lagged.data)
    assert (payload["epoch"], payload["seq"]) == (epoch_of(broker, THREAD), seq_of(last))
    assert payload["error"]["code"] == "lagged"
    assert payload["error"]["message"].endswith(f"since={last}")
    assert seqs(events_of(fast)) == [1, 2, 3, 4, 5]
    stats = broker.statistics()
    assert (stats.lagged, stats.subscribers) == (1, 1)
    assert broker.channel_statistics(THREAD).lagged == 1


@pytest.mark.asyncio
async def test_aclose_ends_everything_and_refuses_use() -> None:
    broker = MemoryBroker(HubSettings())
    sink = BufferSink()
    await broker.subscribe(THREAD, sink, create=True)
    await broker.aclose()
    await broker.aclose()
    assert sink.end_reason == "shutdown"
    with pytest.raises(RuntimeError):
        await broker.publish([RUN], [ev(1)])
    with pytest.raises(SubscriberError) as info:
        await broker.subscribe(THREAD, BufferSink(), create=True)
    assert info.value.status == 503


def test_buffer_sink_is_a_sink() -> None:
    assert isinstance(BufferSink(), Sink)


def test_settings_reject_unknown_fields() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_subscriber": 1}, HubSettings)


@pytest.mark.asyncio
async def test_history_keeps_no_parsed_form_but_the_reducer_sees_it() -> None:
    class Parsed:
        pass

    seen: list[bool] = []

    class Spy:
        def apply(self, event: HubEvent) -> None:
            seen.append(isinstance(event.decoded, Parsed))

        def snapshot(self) -> bytes:
            return b"null"

    async with MemoryBroker(reducer_factory=lambda channel: Spy()) as broker:
        parsed = Parsed()
        gone = weakref.ref(parsed)
        await broker.publish(["run:r"], [HubEvent("e", b"{}", parsed)])
        del parsed
        gc.collect()
        assert gone() is None  # history (bounded by data bytes) does not keep it alive
        sink = BufferSink(buffer_limit=1 << 20)
        await broker.subscribe("run:r", sink, since=START)
        assert b"event: e" in sink.take()
    assert seen == [True]


@pytest.mark.asyncio
async def test_a_tick_checks_a_bounded_slice_of_a_large_hub_and_still_expires_every_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """50,000 retained channels: a housekeeping tick must not walk them all (it stalled the loop
    for ~40 ms every second), yet each expired one goes within EXPIRY_ROUND_TICKS ticks, a
    channel with a subscriber is swept at every tick, and a pending channel left by its
    subscriber goes at the first tick after its grace (it counts against its creator)."""
    from gateway.hub import memory
    from gateway.hub.channel import Channel

    checked = 0
    expired = Channel.expired

    def counting(self: Channel, now: float) -> bool:
        nonlocal checked
        checked += 1
        return expired(self, now)

    monkeypatch.setattr(Channel, "expired", counting)
    n = 50_000
    hub = settings(retention=0.0, sweep_interval=3600, pending_grace=0.5)
    async with MemoryBroker(hub) as broker:
        watched = BufferSink()
        await broker.subscribe(THREAD, watched, create=True)
        # The oldest channel: a round checks the newest first, so it would come last.
        left = await broker.subscribe("thread:left", BufferSink(), create=True, owner="client")
        left.close()
        for i in range(n):
            await broker.publish([f"run:{i}"], [ev(1)])
            await broker.close_channel(f"run:{i}")
        swept = 0
        sweep = Channel.sweep

        def counting_sweep(self: Channel, now: float, *, heartbeat: bool) -> None:
            nonlocal swept
            swept += 1
            sweep(self, now, heartbeat=heartbeat)

        monkeypatch.setattr(Channel, "sweep", counting_sweep)
        loop = asyncio.get_running_loop()
        share = max(memory.EXPIRY_SLICE_MIN, -(-(n + 2) // memory.EXPIRY_ROUND_TICKS))
        for tick in range(1, memory.EXPIRY_ROUND_TICKS + 1):
            checked = 0
            broker._sweep(loop.time() + 1, heartbeat=False)
            assert checked <= share + 2  # and the two pending channels, each tick
            assert swept == tick + 1  # the watched channel every tick; the left one once
            if tick == 1:
                assert await broker.channel_info("thread:left") is None
                assert broker.statistics().pending_channels == 1  # the watched thread's
        assert broker.statistics().channels == 1  # every ended one dropped, the thread kept
