"""ToolRounds: per-run round state with compare-and-swap, bounded (gateway/state/rounds.py)."""

from __future__ import annotations

import pytest
from state_factories import BOUND

from gateway.state import RoundState, ToolRounds


@pytest.mark.asyncio
async def test_swap_only_from_the_expected_state(rounds: ToolRounds) -> None:
    initial = await rounds.get("run_1")
    assert initial == RoundState()
    marked = RoundState(rounds=0, last_action=("call_1",))
    assert await rounds.swap("run_1", initial, marked)
    # A second answerer read the initial state too: it loses.
    assert not await rounds.swap("run_1", initial, RoundState(last_action=("call_1",)))
    assert await rounds.get("run_1") == marked
    done = RoundState(rounds=1, last_action=("call_1",))
    assert await rounds.swap("run_1", marked, done)
    assert await rounds.get("run_1") == done
    assert await rounds.get("run_2") == RoundState()


@pytest.mark.asyncio
async def test_forget_drops_the_run(rounds: ToolRounds) -> None:
    marked = RoundState(rounds=2, last_action=("call_1",))
    assert await rounds.swap("run_1", RoundState(), marked)
    await rounds.forget("run_1")
    assert await rounds.get("run_1") == RoundState()
    # The answer in progress when the run was forgotten cannot write it back.
    assert not await rounds.swap("run_1", marked, RoundState(rounds=3))
    assert len(rounds) == 0


@pytest.mark.asyncio
async def test_bounded_least_recently_used_forgotten_first(rounds: ToolRounds) -> None:
    for n in range(BOUND):
        assert await rounds.swap(f"run_{n}", RoundState(), RoundState(rounds=1))
    await rounds.get("run_0")  # used: now the most recent
    assert await rounds.swap("run_new", RoundState(), RoundState(rounds=1))
    assert len(rounds) == BOUND
    assert await rounds.get("run_0") == RoundState(rounds=1)
    assert await rounds.get("run_1") == RoundState()
