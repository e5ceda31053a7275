"""The broker's memory budget: what is charged, and what is evicted first when over it."""

from __future__ import annotations

import asyncio
import json

import pytest
from hub_helpers import CountingReducer, at, epoch_of, ev, seq_of, settings

from gateway.hub import START, BufferSink, HubEvent, MemoryBroker, ReducerFactory
from gateway.hub.budget import TRIM_AFTER_BYTES, TRIM_AFTER_SUBSCRIBERS, malloc_trim
from gateway.hub.channel import SNAPSHOT_OVERHEAD
from gateway.hub.history import History
from parsers.sse import ServerSentEvent, SSEDecoder

PER_NAME = 100
"""What :class:`SizedReducer` says it holds per event folded."""


class SizedReducer(CountingReducer):
    @property
    def nbytes(self) -> int:
        return PER_NAME * len(self.names)


def sized(channel: str) -> SizedReducer:
    return SizedReducer()


def unsized(channel: str) -> None:
    return None


def cost(*events: HubEvent) -> int:
    return sum(History.cost(e) for e in events)


def broker(budget: int, reducer_factory: ReducerFactory = unsized, **more: object) -> MemoryBroker:
    return MemoryBroker(settings(memory_budget=budget, **more), reducer_factory=reducer_factory)


def events_of(sink: BufferSink) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return decoder.feed(sink.take())


def history(b: MemoryBroker, channel: str) -> tuple[int, int]:
    stats = b.channel_statistics(channel)
    assert stats is not None
    return stats.first_seq, stats.last_seq


@pytest.mark.asyncio
async def test_history_reducer_and_cached_snapshot_are_charged_until_the_channel_goes() -> None:
    async with broker(1 << 30, sized, retention=0.05) as b:
        events = [ev(i) for i in range(5)]
        await b.publish(["run:a"], events)
        expected = cost(*events) + 5 * PER_NAME
        assert b.statistics().retained_bytes == expected
        snap = await b.snapshot("run:a")
        assert snap is not None
        expected += len(snap.data) + SNAPSHOT_OVERHEAD
        stats = b.channel_statistics("run:a")
        assert stats is not None and stats.retained_bytes == expected
        assert b.statistics().retained_bytes == expected
        # Publishing invalidates the cached snapshot; its bytes are no longer charged.
        await b.publish(["run:a"], [ev(5)])
        assert b.statistics().retained_bytes == cost(*events, ev(5)) + 6 * PER_NAME
        await b.close_channel("run:a")
        async with asyncio.timeout(5):
            while b.channel_statistics("run:a") is not None:
                await asyncio.sleep(0.01)
        assert b.statistics().retained_bytes == 0


async def _old_and_live(b: MemoryBroker) -> None:
    events = [ev(i) for i in range(5)]
    await b.publish(["run:old"], events)
    await b.close_channel("run:old")
    await b.publish(["run:live"], events)


@pytest.mark.asyncio
async def test_a_snapshot_cached_for_a_subscriber_is_kept_within_the_budget() -> None:
    async with broker(1 << 30, sized) as dry:
        await _old_and_live(dry)
        held = dry.statistics().retained_bytes
    async with broker(held + 1, sized) as b:
        await _old_and_live(b)
        assert b.statistics().retained_bytes == held
        # The snapshot made for this subscriber is cached and charged: over the budget, the
        # ended channel goes, as after a publish or a GET of the snapshot.
        await b.subscribe("run:live", BufferSink(), snapshot=True)
        stats = b.statistics()
        assert stats.retained_bytes <= stats.memory_budget
        assert b.channel_statistics("run:old") is None


@pytest.mark.asyncio
async def test_an_event_in_two_channels_is_charged_to_each() -> None:
    async with broker(1 << 30) as b:
        await b.publish(["run:a", "thread:t"], [ev(1), ev(2)])
        assert b.statistics().retained_bytes == 2 * cost(ev(1), ev(2))


@pytest.mark.asyncio
async def test_ended_channels_go_first_the_first_ended_first() -> None:
    one = cost(ev(0))
    async with broker(10 * one) as b:
        for name in ("run:a", "run:b", "run:c"):
            await b.publish([name], [ev(0), ev(1)])
        await b.publish(["thread:live"], [ev(0), ev(1)])
        await b.close_channel("run:c")
        await b.close_channel("run:a")
        await b.close_channel("run:b")
        # 8 events held; 3 more make 11: one ended channel must go, the one that ended first.
        await b.publish(["thread:live"], [ev(2), ev(3), ev(4)])
        assert b.channel_statistics("run:c") is None
        assert b.channel_statistics("run:a") is not None
        assert b.channel_statistics("run:b") is not None
        assert history(b, "thread:live") == (1, 5)
        await b.publish(["thread:live"], [ev(5), ev(6)])
        assert b.channel_statistics("run:a") is None
        assert b.channel_statistics("run:b") is not None
        assert history(b, "thread:live") == (1, 7)
        stats = b.statistics()
        assert (stats.channels_evicted, stats.events_evicted) == (2, 0)
        assert stats.retained_bytes <= stats.memory_budget == 10 * one
        # A channel evicted whole is gone, as after its retention.
        assert await b.snapshot("run:c") is None


@pytest.mark.asyncio
async def test_then_the_oldest_history_across_open_channels_goes() -> None:
    one = cost(ev(0))
    async with broker(6 * one) as b:
        await b.publish(["thread:old"], [ev(1), ev(2)])
        await b.publish(["run:new"], [ev(1)])
        await b.publish(["thread:old"], [ev(3)])
        await b.publish(["run:new"], [ev(2), ev(3)])
        assert b.statistics().retained_bytes == 6 * one
        # Over by one event: the oldest held anywhere is thread:old's first.
        await b.publish(["run:new"], [ev(4)])
        assert history(b, "thread:old") == (2, 3)
        assert history(b, "run:new") == (1, 4)
        # Over by two: thread:old's seq 2, then run:new's seq 1 (published before thread:old's 3).
        await b.publish(["run:new"], [ev(5), ev(6)])
        assert history(b, "thread:old") == (3, 3)
        assert history(b, "run:new") == (2, 6)
        stats = b.statistics()
        assert (stats.channels_evicted, stats.events_evicted) == (0, 3)
        assert stats.retained_bytes == 6 * one


@pytest.mark.asyncio
async def test_evicted_history_resumes_from_the_snapshot_and_connected_subscribers_lose_nothing() -> (
    None
):
    one = cost(ev(0))
    # Room for a few events of history and, later, the snapshot cached for the late subscriber.
    budget = 4 * one + 20 * PER_NAME + 300
    async with broker(budget, sized) as b:
        await b.publish(["run:a"], [ev(0)])
        connected = BufferSink()
        await b.subscribe("run:a", connected, since=START)
        for i in range(1, 20):
            await b.publish(["run:a"], [ev(i)])
        first, last = history(b, "run:a")
        assert last == 20 and first > 2
        assert b.statistics().retained_bytes <= budget
        assert [seq_of(e.id) for e in events_of(connected)] == list(range(1, 21))

        late = BufferSink()
        await b.subscribe("run:a", late, since=at(b, "run:a", 1))
        lost, snapshot, *rest = events_of(late)
        assert lost.event == "runcast.history_lost"
        epoch = epoch_of(b, "run:a")
        assert json.loads(lost.data) == {
            "since": f"{epoch}-1",
            "epoch": epoch,
            "first_seq": first,
            "last_seq": 20,
        }
        assert snapshot.event == "runcast.snapshot" and snapshot.id == f"{epoch}-20"
        assert json.loads(snapshot.data)["snapshot"]["count"] == 20
        assert rest == []

        # A position still held resumes from history as before (the snapshot cached for the
        # late one is charged too: older history may have gone for it).
        first, _ = history(b, "run:a")
        resumed = BufferSink()
        await b.subscribe("run:a", resumed, since=at(b, "run:a", first))
        assert [seq_of(e.id) for e in events_of(resumed)] == list(range(first + 1, 21))


@pytest.mark.asyncio
async def test_reducer_state_is_never_evicted_even_over_the_budget() -> None:
    async with broker(10 * PER_NAME, sized) as b:
        for i in range(20):
            await b.publish(["run:a"], [ev(i)])
        stats = b.channel_statistics("run:a")
        assert stats is not None
        assert (stats.history_events, stats.retained_bytes) == (0, 20 * PER_NAME)
        snap = await b.snapshot("run:a")
        assert snap is not None and json.loads(snap.data)["count"] == 20


@pytest.mark.asyncio
async def test_a_reopened_channel_is_no_longer_evicted_as_ended() -> None:
    one = cost(ev(0))
    async with broker(5 * one) as b:
        await b.publish(["run:a"], [ev(0)])
        await b.publish(["run:b"], [ev(0)])
        await b.close_channel("run:a")
        await b.close_channel("run:b")
        await b.publish(["run:a"], [ev(1)])  # a run continues after submit_tool_outputs
        await b.publish(["thread:t"], [ev(0), ev(1), ev(2)])
        assert b.channel_statistics("run:b") is None
        assert history(b, "run:a") == (1, 2)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="memory budget"):
        broker(0)


@pytest.mark.skipif(malloc_trim is None, reason="malloc_trim is glibc's")
@pytest.mark.asyncio
async def test_a_large_drop_from_the_peak_asks_for_one_heap_trim() -> None:
    async with broker(1 << 30, max_history_bytes=TRIM_AFTER_BYTES) as b:
        budget = b._budget
        big = HubEvent("big", b"x" * (TRIM_AFTER_BYTES // 2))
        await b.publish(["run:a"], [big])
        await b.publish(["run:b"], [big])
        assert not budget.trim_due()
        await b.close_channel("run:a")
        b._drop_channel(b._channels["run:a"])
        assert not budget.trim_due()  # half the threshold freed
        b._drop_channel(b._channels["run:b"])
        assert budget.trim_due()
        assert not budget.trim_due()  # once per drop


@pytest.mark.skipif(malloc_trim is None, reason="malloc_trim is glibc's")
@pytest.mark.asyncio
async def test_many_subscribers_leaving_ask_for_one_heap_trim_once_settled() -> None:
    async with broker(1 << 30) as b:
        budget = b._budget
        sinks = [BufferSink() for _ in range(TRIM_AFTER_SUBSCRIBERS + 10)]
        subscriptions = [await b.subscribe("thread:t", s, create=True) for s in sinks]
        assert not budget.trim_due()  # the sweep sees the peak
        for subscription in subscriptions[: TRIM_AFTER_SUBSCRIBERS - 1]:
            subscription.close()
        assert not budget.trim_due()
        assert not budget.trim_due()  # settled, but too few left
        subscriptions[TRIM_AFTER_SUBSCRIBERS - 1].close()
        assert not budget.trim_due()  # still leaving
        assert budget.trim_due()  # settled: once
        assert not budget.trim_due()
