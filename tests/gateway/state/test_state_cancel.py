"""A task polling the shared state stops when cancelled, even if the cancellation lands while a
command's reply is being read (redis-py then returns the reply instead of raising)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state import ActionClaims


@pytest.mark.asyncio
async def test_waiting_for_a_takeover_stops_when_cancelled(claims: ActionClaims) -> None:
    claim = await claims.claim("run_1")
    for attempt in range(20):  # at every point of the poll: in a command, between commands
        waiter = asyncio.create_task(claim.wait_superseded())
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        waiter.cancel()
        async with asyncio.timeout(2):
            await asyncio.wait([waiter])
        assert waiter.cancelled()
    await claims.release(claim)
