"""RunThreads: run -> thread for auth, newest first, bounded (gateway/state/threads.py)."""

from __future__ import annotations

import pytest
from state_factories import BOUND

from gateway.state import RunThreads


@pytest.mark.asyncio
async def test_noted_runs_are_found_newest_first(threads: RunThreads) -> None:
    assert await threads.thread_of("run_1") is None
    await threads.note("run_1", "thread_1")
    await threads.note("run_2", None)
    assert await threads.thread_of("run_1") == "thread_1"
    assert await threads.recent(10) == [("run_2", None), ("run_1", "thread_1")]
    assert await threads.recent(1) == [("run_2", None)]


@pytest.mark.asyncio
async def test_an_unknown_thread_never_hides_a_known_one(threads: RunThreads) -> None:
    await threads.note("run_1", "thread_1")
    await threads.note("run_1", None)
    assert await threads.thread_of("run_1") == "thread_1"
    await threads.note("run_2", None)
    await threads.note("run_2", "thread_2")
    assert await threads.thread_of("run_2") == "thread_2"


@pytest.mark.asyncio
async def test_bounded_least_recently_noted_forgotten_first(threads: RunThreads) -> None:
    for n in range(BOUND):
        await threads.note(f"run_{n}", f"thread_{n}")
    await threads.note("run_0", "thread_0")  # noted again: now the newest
    await threads.note("run_new", "thread_new")
    assert len(threads) == BOUND
    assert await threads.thread_of("run_1") is None
    assert await threads.thread_of("run_0") == "thread_0"
    assert [run for run, _ in await threads.recent(BOUND)] == [
        "run_new",
        "run_0",
        f"run_{BOUND - 1}",
    ]
