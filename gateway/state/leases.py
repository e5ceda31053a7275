"""Who owns a run: :class:`RunLeases`, a lease per run with a fencing token, and its in-memory form.

A relay holds its run's lease while it pumps it; a relay continuing the run (a client's
submission accepted) takes the lease over, which hands out a higher token, so anything the
previous holder still tries with its old lease (renew, release) is refused. The expiry watcher
only settles a run that nobody holds. Tokens only ever grow (across every run of one store),
so a network store can reject writes carrying a token older than the run's current one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import msgspec

from gateway.hub import Fence

__all__ = ["Lease", "MemoryRunLeases", "RunLeases"]


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    owner: str
    token: int
    """Fencing token: greater than every token handed out before it by the same store."""
    expires_at: float
    """Unix time; the lease is anyone's to take after it unless renewed."""


class RunLeases(Protocol):
    """Run ownership shared by every gateway process of a deployment."""

    async def acquire(
        self,
        run_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: bool = False,
        after: int | None = None,
    ) -> Lease | None:
        """A new lease on ``run_id`` for ``ttl`` seconds; None while another owner holds one,
        unless ``take_over`` (the previous holder's lease stops counting at once). With
        ``after``, only if no lease was handed out on the run since the one with that token
        (its holder taking a lapsed lease back, never one another node held meanwhile)."""
        ...

    async def renew(self, lease: Lease, *, ttl: float) -> Lease | None:
        """``lease`` extended by ``ttl`` from now, same token; None if it was lost meanwhile."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Give the run up; False (and nothing changes) if ``lease`` was no longer current."""
        ...

    async def holder(self, run_id: str) -> Lease | None:
        """The current unexpired lease on ``run_id``, if any."""
        ...

    def fence(self, lease: Lease) -> Fence | None:
        """What a publish under ``lease`` carries so a shared broker can refuse it once the
        lease has a newer holder (None: one process, nothing to check)."""
        ...


class MemoryRunLeases:
    """:class:`RunLeases` for one process. Holds only leases not yet released or expired."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_runs: int = 100_000) -> None:
        self._clock = clock
        self._leases: dict[str, Lease] = {}
        self._last: OrderedDict[str, int] = OrderedDict()
        """The last token handed out per run (bounded: the oldest runs are forgotten first)."""
        self._max_runs = max_runs
        self._token = 0

    def __len__(self) -> int:
        return len(self._leases)

    async def acquire(
        self,
        run_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: bool = False,
        after: int | None = None,
    ) -> Lease | None:
        if not take_over and await self.holder(run_id) is not None:
            return None
        if after is not None and self._last.get(run_id, after) != after:
            return None
        self._token += 1
        self._last[run_id] = self._token
        self._last.move_to_end(run_id)
        while len(self._last) > self._max_runs:
            self._last.popitem(last=False)
        lease = Lease(run_id=run_id, owner=owner, token=self._token, expires_at=self._clock() + ttl)
        self._leases[run_id] = lease
        return lease

    async def renew(self, lease: Lease, *, ttl: float) -> Lease | None:
        if await self.holder(lease.run_id) != lease:
            return None
        renewed = msgspec.structs.replace(lease, expires_at=self._clock() + ttl)
        self._leases[lease.run_id] = renewed
        return renewed

    async def release(self, lease: Lease) -> bool:
        current = self._leases.get(lease.run_id)
        if current is None or current.token != lease.token:
            return False
        del self._leases[lease.run_id]
        return True

    def fence(self, lease: Lease) -> Fence | None:
        return None

    async def holder(self, run_id: str) -> Lease | None:
        lease = self._leases.get(run_id)
        if lease is not None and lease.expires_at <= self._clock():
            # Expired: forgotten here, so an abandoned lease costs nothing once looked at.
            del self._leases[run_id]
            return None
        return lease
