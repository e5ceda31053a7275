"""cancel_and_wait: the child ends cancelled quietly; the caller's own cancellation still propagates."""

from __future__ import annotations

import asyncio

import pytest

from gateway.tasks import cancel_and_wait


async def _slow_to_stop(stopping: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        stopping.set()
        await asyncio.sleep(0.05)  # cleanup that takes a while, as closing a connection does


@pytest.mark.asyncio
async def test_a_cancelled_child_is_waited_for_quietly() -> None:
    stopping = asyncio.Event()
    child = asyncio.create_task(_slow_to_stop(stopping))
    await asyncio.sleep(0)
    await cancel_and_wait(child)
    assert child.cancelled() and stopping.is_set()


@pytest.mark.asyncio
async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    stopping = asyncio.Event()
    child = asyncio.create_task(_slow_to_stop(stopping))
    await asyncio.sleep(0)
    after = []

    async def owner() -> None:
        await cancel_and_wait(child)
        after.append("went on")  # must not happen: the owner itself was cancelled

    task = asyncio.create_task(owner())
    await stopping.wait()  # the owner now waits for the child's cleanup
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == [] and task.cancelled()
    await asyncio.wait([child])


@pytest.mark.asyncio
async def test_a_child_that_already_ended_is_fine() -> None:
    child = asyncio.create_task(asyncio.sleep(0))
    await child
    await cancel_and_wait(child)
    assert child.done() and not child.cancelled()
