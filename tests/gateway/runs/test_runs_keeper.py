"""LeaseKeeper: a relay's lease renewed on a timer, and what happens when it is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.runs.keeper import LeaseKeeper
from gateway.state import LiveRun, MemoryLiveRuns, MemoryRunLeases

pytestmark = pytest.mark.asyncio

TTL = 0.15


async def test_the_lease_outlives_its_ttl_while_kept_and_the_run_stays_live() -> None:
    leases, live = MemoryRunLeases(), MemoryLiveRuns()
    lost: list[bool] = []
    keeper = LeaseKeeper(leases, live, ttl=TTL, on_lost=lambda: lost.append(True))
    first = await keeper.acquire("run_1", "a")
    await keeper.record("t_1", None)
    await asyncio.sleep(TTL * 4)  # no event at all meanwhile
    held = await leases.holder("run_1")
    assert held is not None and held.token == first.token and not lost
    assert await live.expired(time.time(), limit=10) == []  # its expiry moved along
    await keeper.release(ended=True)
    assert await leases.holder("run_1") is None and len(live) == 0


async def test_a_taken_lease_is_reported_once_and_left_to_its_new_holder() -> None:
    leases, live = MemoryRunLeases(), MemoryLiveRuns()
    lost: list[bool] = []
    keeper = LeaseKeeper(leases, live, ttl=TTL, on_lost=lambda: lost.append(True))
    await keeper.acquire("run_1", "a")
    await keeper.record("t_1", None)
    taker = await leases.acquire("run_1", "b", ttl=30, take_over=True)
    async with asyncio.timeout(2):
        while not lost:
            await asyncio.sleep(0.01)
    assert keeper.lost and lost == [True]
    await keeper.release(ended=True)
    assert await leases.holder("run_1") == taker  # not released by the old holder
    assert len(live) == 1  # the run's record is the new holder's


async def test_a_stopped_relay_releases_its_lease_but_leaves_the_run_live() -> None:
    leases, live = MemoryRunLeases(), MemoryLiveRuns()
    keeper = LeaseKeeper(leases, live, ttl=TTL, on_lost=lambda: None)
    await keeper.acquire("run_1", "a")
    await keeper.record("t_1", None)
    await keeper.release(ended=False)  # the gateway stops: another node takes the run
    assert await leases.holder("run_1") is None and len(live) == 1


async def test_a_lapsed_lease_nobody_took_is_taken_back_with_a_new_token() -> None:
    leases, live = MemoryRunLeases(), MemoryLiveRuns()
    lost: list[bool] = []
    fenced: list[int] = []
    keeper = LeaseKeeper(
        leases,
        live,
        ttl=TTL,
        on_lost=lambda: lost.append(True),
        on_lease=lambda lease: fenced.append(lease.token),
    )
    first = await keeper.acquire("run_1", "a")
    await leases.release(first)  # as if it lapsed while the store was unreachable
    async with asyncio.timeout(2):
        while not fenced:
            await asyncio.sleep(0.01)
    held = await leases.holder("run_1")
    assert held is not None and held.token == fenced[0] > first.token and not lost
    assert keeper.lease == held
    await keeper.release(ended=True)


async def test_a_store_that_lost_its_keys_gets_the_run_recorded_again() -> None:
    # A Redis restarted empty: the lease and the live record are both gone. The lease is taken
    # back; without the record written again, no node would take the run over if this one died.
    leases, live = MemoryRunLeases(), MemoryLiveRuns()
    keeper = LeaseKeeper(leases, live, ttl=TTL, on_lost=lambda: None)
    first = await keeper.acquire("run_1", "a")
    await keeper.record("t_1", "sk-caller")
    recorded = live._runs["run_1"]
    await leases.release(first)
    await live.remove("run_1")
    async with asyncio.timeout(2):
        while len(live) == 0:
            await asyncio.sleep(0.01)
    again = live._runs["run_1"]
    assert (again.thread_id, again.api_key, again.stream) == ("t_1", "sk-caller", recorded.stream)
    held = await leases.holder("run_1")
    assert held is not None and held.token > first.token and again.expires_at == held.expires_at
    await keeper.release(ended=True)
    assert len(live) == 0


class _FailingOnce(MemoryLiveRuns):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def put(self, run: LiveRun) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("store unreachable")
        await super().put(run)


async def test_a_record_the_store_refused_is_written_at_the_next_renewal() -> None:
    leases, live = MemoryRunLeases(), _FailingOnce()
    keeper = LeaseKeeper(leases, live, ttl=TTL, on_lost=lambda: None)
    await keeper.acquire("run_1", "a")
    await keeper.record("t_1", None)
    assert live.failed and len(live) == 0
    async with asyncio.timeout(2):
        while len(live) == 0:
            await asyncio.sleep(0.01)
    await keeper.release(ended=True)
    assert len(live) == 0
