"""ExpirySchedule: earliest first, replace, discard only the current entry, bound (schedule.py)."""

from __future__ import annotations

import msgspec
import pytest
from state_factories import BOUND

from gateway.state import ExpiryEntry, ExpirySchedule


def entry(run_id: str, deadline: float, *, seq: int = 1) -> ExpiryEntry:
    return ExpiryEntry(
        run_id=run_id, thread_id="thread_1", api_key=None, seq=seq, deadline=deadline
    )


@pytest.mark.asyncio
async def test_earliest_deadline_first_and_it_stays_until_removed(
    schedule: ExpirySchedule,
) -> None:
    assert await schedule.earliest() is None
    await schedule.put(entry("run_b", 20.0))
    await schedule.put(entry("run_a", 10.0))
    await schedule.put(entry("run_c", 30.0))
    assert await schedule.earliest() == entry("run_a", 10.0)
    assert await schedule.earliest() == entry("run_a", 10.0)
    await schedule.remove("run_a")
    assert await schedule.earliest() == entry("run_b", 20.0)
    assert len(schedule) == 2


@pytest.mark.asyncio
async def test_put_replaces_the_runs_entry(schedule: ExpirySchedule) -> None:
    first = entry("run_a", 10.0)
    await schedule.put(first)
    await schedule.put(entry("run_b", 20.0))
    rearmed = msgspec.structs.replace(first, deadline=25.0, retried=True)
    await schedule.put(rearmed)
    assert await schedule.get("run_a") == rearmed
    assert await schedule.earliest() == entry("run_b", 20.0)
    await schedule.discard(first)  # replaced meanwhile: stays
    assert await schedule.get("run_a") == rearmed
    await schedule.discard(rearmed)
    assert await schedule.get("run_a") is None
    assert len(schedule) == 1


@pytest.mark.asyncio
async def test_bounded_oldest_dropped_first(schedule: ExpirySchedule) -> None:
    for n in range(BOUND + 2):
        await schedule.put(entry(f"run_{n}", 100.0 - n))
    assert len(schedule) == BOUND
    assert await schedule.get("run_0") is None and await schedule.get("run_1") is None
    assert await schedule.earliest() == entry(f"run_{BOUND + 1}", 100.0 - BOUND - 1)


@pytest.mark.asyncio
async def test_many_replacements_keep_one_entry_per_run(schedule: ExpirySchedule) -> None:
    for n in range(500):
        await schedule.put(entry("run_a", float(n)))
    assert len(schedule) == 1
    assert await schedule.earliest() == entry("run_a", 499.0)
    await schedule.clear()
    assert await schedule.earliest() is None and len(schedule) == 0
