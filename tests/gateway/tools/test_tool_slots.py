"""``FairSlots``: every slot used while anyone waits, a freed one to the waiting action holding
the fewest, cancelled waiters leaving nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from gateway.tools.slots import FairSlots


async def _holders(
    slots: FairSlots, order: list[str], key: str, n: int
) -> list[asyncio.Task[None]]:
    async def one(i: int) -> None:
        await slots.acquire(key)
        order.append(f"{key}{i}")

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    for _ in range(3):
        await asyncio.sleep(0)
    return tasks


@pytest.mark.asyncio
async def test_a_freed_slot_goes_to_the_waiting_action_holding_the_fewest() -> None:
    slots = FairSlots(2)
    order: list[str] = []
    await _holders(slots, order, "a", 6)  # a holds both slots, four of its calls wait
    await _holders(slots, order, "b", 2)
    await _holders(slots, order, "c", 1)
    assert order == ["a0", "a1"]
    for key in ("a", "a", "b", "c", "a", "b", "a"):  # whose call ends, in turn
        slots.release(key)
        await asyncio.sleep(0)
    # b and c do not wait behind a's backlog; between actions holding as many, turns rotate.
    assert order == ["a0", "a1", "b0", "a2", "c0", "b1", "a3", "a4", "a5"]
    assert slots.free == 0
    for key in ("a", "a"):
        slots.release(key)
    assert slots.free == 2


@pytest.mark.asyncio
async def test_an_action_alone_gets_every_slot_and_cancelled_waiters_leave_nothing() -> None:
    slots = FairSlots(3)
    order: list[str] = []
    await _holders(slots, order, "a", 3)
    assert order == ["a0", "a1", "a2"] and slots.free == 0
    waiting = await _holders(slots, order, "b", 2)
    waiting[0].cancel()
    await asyncio.sleep(0)
    slots.release("a")
    await asyncio.sleep(0)
    assert order[-1] == "b1"
    # Granted, then cancelled before it ran: the slot goes back.
    granted = await _holders(slots, order, "c", 1)
    slots.release("a")
    granted[0].cancel()
    await asyncio.sleep(0)
    assert slots.free == 1
