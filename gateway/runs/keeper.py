"""LeaseKeeper: holds one relay's lease on its run, renewed on a timer, and the run's live record.

A relay that owns a run holds its lease (``gateway.state.leases``) for ``ttl`` seconds; the
keeper's task renews it every third of that whether or not events arrive (an upstream silent for
longer than ``ttl`` must not lose its run) and moves the run's record in
:class:`~gateway.state.LiveRuns` along, which is what other nodes watch for failover. A renewal
refused means another node holds the run now: the keeper calls ``on_lost`` once and stops (the
relay then stops pumping at once). A renewal that fails (the store unreachable) is tried again at
the next tick; if the lease lapsed meanwhile and nobody took it, the keeper takes it back (a new
token: ``on_lease`` hands it to the relay's publishes), else the run is lost as above. A lease
taken back writes the run's live record anew, as does the first renewal after a record that could
not be written: a store that lost its keys (a Redis restarted empty) lost the record with the
lease, and a run without one is never taken over if its node dies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from gateway.hub import Fence
from gateway.state import Lease, LiveRun, LiveRuns, LiveStream, RunLeases
from gateway.tasks import cancel_and_wait, check_cancelled

__all__ = ["LeaseKeeper"]

log = logging.getLogger("runcast.relay")


class LeaseKeeper:
    """One relay's lease (None until :meth:`acquire` or :meth:`adopt`); :meth:`release` it."""

    def __init__(
        self,
        leases: RunLeases,
        live: LiveRuns,
        *,
        ttl: float,
        on_lost: Callable[[], None],
        on_lease: Callable[[Lease], None] | None = None,
    ) -> None:
        self._leases = leases
        self._live = live
        self._ttl = ttl
        # The callbacks are the relay's bound methods: a cycle through it, dropped by
        # release() so a finished run is freed by reference counting, not by a full collection.
        self._on_lost: Callable[[], None] | None = on_lost
        self._on_lease = on_lease
        self.lease: Lease | None = None
        self.lost = False
        self._task: asyncio.Task[None] | None = None
        self._record: LiveRun | None = None
        """The run's live record as :meth:`record` made it, once a write of it was tried (so it
        may be in the store: release removes it; written again if the store lost it)."""
        self._rewrite = False
        """The record is to be written again at the next renewal (a write failed, or the lease was
        taken back: the store may have lost both)."""

    @property
    def fence(self) -> Fence | None:
        return None if self.lease is None else self._leases.fence(self.lease)

    async def acquire(self, run_id: str, owner: str) -> Lease:
        """Take the run's lease, from whoever held it (a relay continuing the run)."""
        lease = await self._leases.acquire(run_id, owner, ttl=self._ttl, take_over=True)
        assert lease is not None  # a take-over always gets one
        self._hold(lease)
        return lease

    def adopt(self, lease: Lease) -> None:
        """Hold a lease acquired elsewhere (a node taking over a dead owner's run)."""
        self._hold(lease)

    async def record(
        self, thread_id: str, api_key: str | None, *, stream: LiveStream | None = None
    ) -> None:
        """Record the run (or a ``stream``) as pumped here (other nodes take it over if the lease
        lapses)."""
        lease = self.lease
        if lease is None or self.lost:
            return
        run = LiveRun(
            run_id=lease.run_id,
            thread_id=thread_id,
            api_key=api_key,
            expires_at=lease.expires_at,
            stream=stream,
        )
        self._record = run
        try:
            await self._live.put(run)
        except Exception as exc:  # the store unreachable: the run goes on, written again later
            log.warning(
                "run %s: not recorded as live yet (tried again at the next renewal): %s",
                lease.run_id,
                exc,
            )
            self._rewrite = True
        finally:
            check_cancelled()

    async def release(self, *, ended: bool) -> None:
        """Stop renewing and give the lease up; ``ended``: nobody needs to take the run over
        (it is over, or left to the client), so its live record goes too. The callbacks are
        dropped: nothing is reported after this."""
        self._on_lost = self._on_lease = None
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        lease, self.lease = self.lease, None
        if lease is None or self.lost:
            return
        # Released first: a record a newer owner took over (a continuation) stays its own.
        try:
            if await self._leases.release(lease) and ended and self._record is not None:
                await self._live.remove(lease.run_id)
        except Exception as exc:  # the store unreachable: the lease lapses by itself
            log.warning("run %s: lease not released: %s", lease.run_id, exc)

    def _hold(self, lease: Lease) -> None:
        self.lease = lease
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._renew_loop(), name=f"runcast-lease-{lease.run_id}"
            )

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            lease = self.lease
            if lease is None:
                return
            try:
                renewed = await self._leases.renew(lease, ttl=self._ttl)
            except Exception as exc:  # the store unreachable: try again at the next tick
                log.warning("run %s: lease renewal failed: %s", lease.run_id, exc)
                continue
            finally:
                check_cancelled()
            if renewed is None:
                self._rewrite = True
                renewed = await self._take_back(lease)
            if renewed is None:
                log.warning("run %s: another owner holds the run now; stopping", lease.run_id)
                self._note_lost()
                return
            self.lease = renewed
            record = self._record
            if record is not None:
                try:
                    if self._rewrite:
                        await self._live.put(
                            msgspec.structs.replace(record, expires_at=renewed.expires_at)
                        )
                        self._rewrite = False
                    else:
                        await self._live.touch(lease.run_id, renewed.expires_at)
                except Exception as exc:
                    log.warning("run %s: live record not moved: %s", lease.run_id, exc)
                check_cancelled()

    async def _take_back(self, lease: Lease) -> Lease | None:
        """The lease lapsed (the store was unreachable longer than the ttl): taken again unless
        someone holds it now."""
        try:
            again = await self._leases.acquire(
                lease.run_id, lease.owner, ttl=self._ttl, after=lease.token
            )
        except Exception as exc:
            log.warning("run %s: lease not taken back: %s", lease.run_id, exc)
            return None
        finally:
            check_cancelled()
        if again is not None:
            log.warning("run %s: the lease had lapsed; taken back", lease.run_id)
            self.lease = again
            if self._on_lease is not None:
                self._on_lease(again)
        return again

    def fenced(self) -> None:
        """A publish under this lease was refused: the run has a newer owner."""
        if not self.lost:
            self._note_lost()

    def _note_lost(self) -> None:
        self.lost = True
        if self._on_lost is not None:
            self._on_lost()
