"""Channels at rest keep their reducer pickled and their history in tuples (gateway/hub/packed.py):
exactly the same snapshots, and next to nothing left for the cycle collector to walk."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import pytest
from hub_helpers import settings

from gateway.hub import HubEvent, MemoryBroker, Reducer
from gateway.hub.channel import Channel
from gateway.hub.counters import HubCounters
from gateway.hub.packed import PackedReducer
from gateway.hub.redacted import redacting
from gateway.runs.assistants import reducer as assistants
from gateway.runs.protocols import reducer_factory as protocol_reducers
from parsers.sse import SSEDecoder

DATA = Path(__file__).parents[2] / "data"

CASES = [
    ("run:run_1", "assistants/A-text.sse"),
    ("thread:thread_1", "assistants/J-thread-and-run.sse"),
    ("run:run_2", "assistants/M-parallel-tool-calls.sse"),
    ("response:resp_1", "responses/B-function-call.sse"),
    ("chat:chatcmpl_1", "chat/D-parallel-tool-calls.sse"),
    ("channel:named", "responses/A-text.sse"),
]


def _reducer(name: str) -> Reducer:
    made = assistants.reducer_factory(name) or protocol_reducers(name)
    assert made is not None
    return made


def _events(path: str) -> list[HubEvent]:
    decoder = SSEDecoder()
    sse = decoder.feed((DATA / path).read_bytes()) + decoder.close()
    return [HubEvent(e.event or "message", e.data_bytes) for e in sse]


class _Live(Channel):
    """A channel that never packs: the previous design, the reference."""

    __slots__ = ()

    def pack(self) -> None:
        pass


def _channel(name: str, kind: type[Channel] = Channel) -> Channel:
    return kind(name, settings(), HubCounters(), _reducer(name), now=0.0, epoch="e")


def _tracked(root: Channel) -> int:
    """The objects the cycle collector tracks that only ``root`` reaches (shared settings,
    counters and types left out)."""
    shared = {id(root._settings), id(root._counters)}
    seen: set[int] = set()
    stack: list[object] = [root]
    count = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in shared or isinstance(obj, type):
            continue
        seen.add(id(obj))
        count += gc.is_tracked(obj)
        stack.extend(o for o in gc.get_referents(obj) if not isinstance(o, type))
    return count


@pytest.mark.parametrize(("name", "path"), CASES)
def test_a_packed_channel_serves_the_same_snapshots_and_folds_on(name: str, path: str) -> None:
    events = _events(path)
    half = len(events) // 2
    reference, packed = _channel(name, _Live), _channel(name)
    reference.publish(events[:half], 1.0)
    packed.publish(events[:half], 1.0)
    assert not packed.packed  # mid-stream
    packed.pack()
    assert packed.packed
    assert packed.snapshot().data == reference.snapshot().data
    assert packed.packed  # a snapshot is made from a copy: the channel stays packed
    reference.publish(events[half:-1], 2.0)
    packed.publish(events[half:-1], 2.0)  # unpacks and folds on
    assert not packed.packed
    assert packed.snapshot().data == reference.snapshot().data
    reference.publish(events[-1:], 3.0)
    packed.publish(events[-1:], 3.0)  # the stream's last event: it packs at once
    assert packed.packed
    assert packed.snapshot().data == reference.snapshot().data
    assert [e for _, e in packed._history.after(0)] == [e for _, e in reference._history.after(0)]


@pytest.mark.parametrize(("name", "path"), CASES)
def test_an_ended_channel_leaves_the_collector_next_to_nothing(name: str, path: str) -> None:
    live, ch = _channel(name, _Live), _channel(name)
    live.publish(_events(path), 1.0)
    live.end(2.0)
    before = _tracked(live)
    ch.publish(_events(path), 1.0)
    ch.end(2.0)  # ends and packs
    gc.collect()  # untracks the history's tuples (their items are untracked)
    after = _tracked(ch)
    assert before >= 8
    assert after <= 2, f"{after} tracked objects left ({before} before)"  # Channel, History


def test_a_redacting_reducer_packs_and_still_masks_the_key() -> None:
    key = "sk-proj-" + "k" * 40
    events = _events("assistants/A-text.sse")
    at = 1 + next(i for i, e in enumerate(events) if e.name == "thread.message.delta")
    # The key spelled across two deltas mid-message: joined in the snapshot only.
    events = [*events[:at], *(_delta(events, part) for part in (key[:20], key[20:]))]
    factory = redacting(assistants.reducer_factory, key)
    ch = Channel("run:run_1", settings(), HubCounters(), factory("run:run_1"), now=0.0, epoch="e")
    ch.publish(events, 1.0)
    ch.pack()
    assert ch.packed
    data = ch.snapshot().data
    assert key.encode() not in data and b"***" in data


def _delta(events: list[HubEvent], text: str) -> HubEvent:
    first = next(e for e in events if e.name == "thread.message.delta")
    message_id = json.loads(first.data)["id"]
    data = json.dumps(
        {
            "id": message_id,
            "object": "thread.message.delta",
            "delta": {"content": [{"index": 0, "type": "text", "text": {"value": text}}]},
        }
    )
    return HubEvent("thread.message.delta", data.encode())


def test_the_budget_is_charged_the_pickle_not_the_live_estimate() -> None:
    ch = _channel("run:run_1")
    ch.publish(_events("assistants/A-text.sse"), 1.0)
    history = ch._history.nbytes
    ch.end(2.0)
    reducer = ch._reducer
    assert isinstance(reducer, PackedReducer)
    assert ch.retained_bytes == history + len(reducer.state) + 64


def test_history_evicted_from_a_packed_channel_is_freed_and_it_folds_on() -> None:
    ch = _channel("run:run_1")
    events = _events("assistants/A-text.sse")
    ch.publish(events, 1.0)
    ch.end(2.0)
    freed = ch.evict_history(10**9, through_gen=0)
    assert freed > 0 and ch.history_events == 0
    ch.publish(events[:1], 3.0)
    assert ch.history_events == 1 and ch.last_seq == len(events) + 1


@pytest.mark.asyncio
async def test_the_broker_packs_a_channel_nothing_was_published_to_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gateway.hub.memory.PACK_AFTER", 0.05)
    events = _events("assistants/J-thread-and-run.sse")
    async with MemoryBroker(
        settings(sweep_interval=0.02), reducer_factory=assistants.reducer_factory
    ) as broker:
        await broker.publish(["thread:t1"], events[:5])
        channel = broker._channels["thread:t1"]
        assert not channel.packed
        for _ in range(100):
            await asyncio.sleep(0.02)
            if channel.packed:
                break
        assert channel.packed, "a thread channel at rest was not packed"
        await broker.publish(["thread:t1"], events[5:-1])
        assert not channel.packed
        await broker.publish(["thread:t1"], events[-1:])  # `done`: the run's stream ended
        assert channel.packed
        reference = _channel("thread:t1", _Live)
        reference.publish(events, 0.0)
        snapshot = await broker.snapshot("thread:t1")
        assert snapshot is not None and snapshot.data == reference.snapshot().data
