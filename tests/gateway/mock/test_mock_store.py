"""Bounded memory: LRU caps and idle TTL of the store, and eviction stopping run drivers."""

from __future__ import annotations

import aiohttp
import pytest
from mock_helpers import WEATHER_TOOL, MockAPI, StartMock

from gateway.mock import MockSettings
from gateway.mock.objects import Message, Thread
from gateway.mock.store import LRUStore, MockStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_cap_evicts_least_recently_used() -> None:
    evicted: list[int] = []
    store: LRUStore[int] = LRUStore(max_items=3, ttl=100, on_evict=evicted.append)
    for i in range(3):
        store.put(f"k{i}", i)
    assert store.get("k0") == 0  # k0 is now the most recently used
    store.put("k3", 3)
    assert evicted == [1] and store.get("k1") is None
    assert [store.get(k) for k in ("k0", "k2", "k3")] == [0, 2, 3]
    for i in range(4, 100):
        store.put(f"k{i}", i)
        assert len(store) <= 3
    assert store.evictions == 97


def test_ttl_drops_idle_entries() -> None:
    clock = FakeClock()
    store: LRUStore[str] = LRUStore(max_items=10, ttl=5, clock=clock)
    store.put("old", "a")
    store.put("used", "b")
    clock.now = 4
    assert store.get("used") == "b"  # refreshes its TTL
    clock.now = 6
    assert store.get("old") is None
    store.put("new", "c")  # sweeps expired entries at the LRU end
    assert len(store) == 2
    clock.now = 20
    store.put("newest", "d")
    assert len(store) == 1


def test_thread_histories_are_capped() -> None:
    store = MockStore(MockSettings(max_messages_per_thread=3, max_runs_per_thread=2))
    record = store.add_thread(Thread(id="thread_a", created_at=0))
    for i in range(10):
        record.add_message(Message(id=f"msg_{i}", created_at=0, thread_id="thread_a", role="user"))
    assert list(record.messages) == ["msg_7", "msg_8", "msg_9"]


@pytest.mark.asyncio
async def test_thread_cap_holds_over_many_runs(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(max_threads=5, max_assistants=2)
    api = MockAPI(session, server.base_url)
    assistant = await api.assistant()
    thread_ids = []
    for _ in range(60):
        thread = await api.thread()
        thread_ids.append(thread["id"])
        await api.run_stream(thread["id"], assistant["id"])
        assert len(server.service.store.threads) <= 5
    status, body, _ = await api.call("GET", f"/threads/{thread_ids[0]}")
    assert (
        status == 404 and body["error"]["message"] == f"No thread found with id '{thread_ids[0]}'."
    )
    for thread_id in thread_ids[-5:]:
        await api.ok("GET", f"/threads/{thread_id}")
    assert server.service.store.threads.evictions == 55
    assert server.service.engine.statistics().active_runs == 0
    for _ in range(3):
        await api.assistant()
    assert len(server.service.store.assistants) == 2


@pytest.mark.asyncio
async def test_evicting_a_thread_stops_its_waiting_run(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(max_threads=1)
    api = MockAPI(session, server.base_url)
    assistant = await api.assistant(WEATHER_TOOL)
    thread = await api.thread()
    events = await api.run_stream(thread["id"], assistant["id"], "tool_call")
    assert events[-2].event == "thread.run.requires_action"
    engine = server.service.engine
    assert engine.statistics().active_runs == 1  # waiting for tool outputs
    await api.thread()  # evicts the first thread
    for _ in range(100):
        if engine.statistics().active_runs == 0:
            break
        await api.ok("GET", "/assistants")
    assert engine.statistics().active_runs == 0
