"""RunLeases: exclusive ownership, fencing tokens, expiry, take-over (gateway/state/leases.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state import RunLeases


@pytest.mark.asyncio
async def test_one_owner_at_a_time_and_release_frees_the_run(leases: RunLeases) -> None:
    first = await leases.acquire("run_1", "a", ttl=10)
    assert first is not None and first.owner == "a" and first.run_id == "run_1"
    assert await leases.acquire("run_1", "b", ttl=10) is None
    assert await leases.holder("run_1") == first
    assert await leases.acquire("run_2", "b", ttl=10) is not None
    assert await leases.release(first)
    assert await leases.holder("run_1") is None
    second = await leases.acquire("run_1", "b", ttl=10)
    assert second is not None and second.owner == "b"


@pytest.mark.asyncio
async def test_tokens_only_grow(leases: RunLeases) -> None:
    tokens = []
    for run_id in ("run_1", "run_2", "run_1"):
        lease = await leases.acquire(run_id, "a", ttl=10)
        assert lease is not None
        tokens.append(lease.token)
        assert await leases.release(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


@pytest.mark.asyncio
async def test_take_over_fences_the_previous_holder(leases: RunLeases) -> None:
    old = await leases.acquire("run_1", "a", ttl=10)
    new = await leases.acquire("run_1", "b", ttl=10, take_over=True)
    assert old is not None and new is not None and new.token > old.token
    assert await leases.renew(old, ttl=10) is None
    assert not await leases.release(old)
    assert await leases.holder("run_1") == new
    assert await leases.renew(new, ttl=10) is not None


@pytest.mark.asyncio
async def test_an_unrenewed_lease_expires_and_renewal_keeps_it(leases: RunLeases) -> None:
    kept = await leases.acquire("run_1", "a", ttl=0.3)
    lapsed = await leases.acquire("run_2", "a", ttl=0.3)
    assert kept is not None and lapsed is not None
    await asyncio.sleep(0.2)
    renewed = await leases.renew(kept, ttl=0.3)
    assert renewed is not None and renewed.token == kept.token
    await asyncio.sleep(0.2)
    assert await leases.holder("run_1") == renewed
    assert await leases.holder("run_2") is None
    assert await leases.renew(lapsed, ttl=1) is None
    taker = await leases.acquire("run_2", "b", ttl=10)
    assert taker is not None and taker.token > lapsed.token
