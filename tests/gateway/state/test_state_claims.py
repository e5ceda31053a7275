"""ActionClaims: claim, take-over, release, submissions in flight (gateway/state/claims.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state import ActionClaims


@pytest.mark.asyncio
async def test_take_over_supersedes_the_claimant_and_waits_for_its_release(
    claims: ActionClaims,
) -> None:
    claim = await claims.claim("run_1")
    assert not claim.superseded
    taker = asyncio.create_task(claims.take_over("run_1"))
    await asyncio.wait_for(claim.wait_superseded(), 1)
    assert claim.superseded
    await asyncio.sleep(0.01)
    assert not taker.done()  # still waiting for the claimant to close its segment
    await claims.release(claim)
    assert await asyncio.wait_for(taker, 1) is True


@pytest.mark.asyncio
async def test_take_over_without_a_claimant_returns_at_once(claims: ActionClaims) -> None:
    assert await asyncio.wait_for(claims.take_over("run_1"), 1) is False
    claim = await claims.claim("run_1")
    await claims.release(claim)
    await claims.release(claim)  # idempotent
    assert await asyncio.wait_for(claims.take_over("run_1"), 1) is False


@pytest.mark.asyncio
async def test_take_over_gives_up_waiting_on_a_stuck_claimant(claims: ActionClaims) -> None:
    # The fixtures' factories bound the wait well under this test's timeout.
    await claims.claim("run_1")
    assert await asyncio.wait_for(claims.take_over("run_1"), 5) is True


@pytest.mark.asyncio
async def test_a_new_claim_releases_the_previous_one(claims: ActionClaims) -> None:
    old = await claims.claim("run_1")
    new = await claims.claim("run_1")
    await claims.release(old)  # stale: the run stays claimed by ``new``
    taker = asyncio.create_task(claims.take_over("run_1"))
    await asyncio.wait_for(new.wait_superseded(), 1)
    assert not old.superseded
    await claims.release(new)
    assert await asyncio.wait_for(taker, 1) is True


@pytest.mark.asyncio
async def test_submissions_in_flight_are_counted(claims: ActionClaims) -> None:
    assert not await claims.incoming("run_1")
    await claims.arriving("run_1")
    await claims.arriving("run_1")
    await claims.arrived("run_1")
    assert await claims.incoming("run_1")
    assert not await claims.incoming("run_2")
    await claims.arrived("run_1")
    assert not await claims.incoming("run_1")
    await claims.arrived("run_1")  # more answers than submissions never goes negative
    await claims.arriving("run_1")
    assert await claims.incoming("run_1")
