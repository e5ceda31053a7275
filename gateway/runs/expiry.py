"""ActionExpiry: ends the channels of runs left at an unanswered ``requires_action`` once expired.

Theory of operation. A relay whose last segment ended at ``thread.run.requires_action`` that
runcast did not answer (no action handler, or the handler skipped it) leaves the run's channel
open for a client's submission. If none comes, the upstream expires the run at ``expires_at``
(spec §5) without any stream telling runcast. So the relay hands the run to this watcher, which
the :class:`~gateway.runs.registry.RelayRegistry` owns: one task sleeps until the earliest
deadline of the :class:`~gateway.state.ExpirySchedule` (``expires_at`` + ``grace``, the grace absorbing clock skew with the upstream), then reads
the run once (``GET .../runs/{run_id}``, spec §1.2). A terminal run is published as
``thread.run.<status>`` followed by ``done`` and its run channel is closed, as after a recovered
stream (``recovery.py``). A run still waiting is looked at once more, ``grace`` later, then left.

A watch is dropped as soon as anything else reaches the run's channel (a client's submission
through runcast continuing the run, whose relay takes over the run's end), checked against the
channel's last seq both before and after the read, or when someone holds the run's lease (a
relay is pumping it); the watcher holds the lease itself while it reads and settles the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from gateway import logs
from gateway.hub import Broker
from gateway.state import ActionClaims, ExpiryEntry, ExpirySchedule, RunLeases
from gateway.tasks import check_cancelled
from gateway.upstream import UpstreamClient

from .channels import run_channel
from .protocol import RunProtocol
from .publisher import RunPublisher

__all__ = ["DEFAULT_GRACE", "ActionExpiry"]

log = logging.getLogger("runcast.relay")

DEFAULT_GRACE = 2.0
"""Seconds past ``expires_at`` before the run is read: ``expires_at`` has one-second resolution
and the upstream's clock is not ours."""

_FETCH_TIMEOUT = 10.0
"""Bound on the one read of a run: the watcher serves every watched run in turn."""

_LEASE_TTL = 2 * _FETCH_TIMEOUT
"""The watcher's hold on a run it settles: one bounded read plus one publish."""

_OWNER = "runcast-action-expiry"
# Between reads of a schedule whose store is unreachable.
_RETRY_DELAY = 1.0


class ActionExpiry:
    """Watches runs waiting at an unanswered action; one task, started on the first watch."""

    def __init__(
        self,
        broker: Broker,
        upstream: UpstreamClient,
        *,
        protocol: RunProtocol[Any],
        claims: ActionClaims,
        schedule: ExpirySchedule,
        leases: RunLeases,
        grace: float = DEFAULT_GRACE,
        on_over: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._broker = broker
        self._upstream = upstream
        self._protocol = protocol
        self._claims = claims
        self._schedule = schedule
        self._leases = leases
        self._grace = grace
        self._on_over = on_over
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._schedule)

    async def watch(
        self, run_id: str, thread_id: str, *, expires_at: int, seq: int, api_key: str | None
    ) -> None:
        """Watch ``run_id``, whose segment ended with ``done`` at run seq ``seq``."""
        if self._closed:
            return
        deadline = max(time.time(), expires_at + self._grace)
        entry = ExpiryEntry(
            run_id=run_id, thread_id=thread_id, api_key=api_key, seq=seq, deadline=deadline
        )
        await self._schedule.put(entry)
        self._wake.set()
        if self._task is None:
            # In a context of its own: a task copies its creator's, and this one serves every
            # run, not the relay whose watch happened to start it (its log ids, ``logs.bind``).
            self._task = asyncio.create_task(
                self._run(), name="runcast-action-expiry", context=contextvars.Context()
            )

    async def forget(self, run_id: str) -> None:
        """The run goes on through runcast: its relay reports its end."""
        await self._schedule.remove(run_id)

    async def aclose(self) -> None:
        """Stop watching (idempotent): the channels left open are the broker's to end."""
        self._closed = True
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
                if not task.cancelled() and task.exception() is not None:
                    log.error("action expiry watcher failed", exc_info=task.exception())
        finally:
            try:
                await self._schedule.clear()
            except Exception as exc:  # its store unreachable: the entries lapse there
                log.warning("action expiry: the schedule could not be cleared: %s", exc)

    # -- the task --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception as exc:
                # The schedule's store unreachable (Redis mode): the watch goes on once it is
                # back; CancelledError is a BaseException and still stops the task.
                log.warning("action expiry: the schedule cannot be read (%s); retrying", exc)
                await asyncio.sleep(_RETRY_DELAY)

    async def _step(self) -> None:
        """Wait for the earliest entry's deadline (or a change of the schedule); settle it."""
        self._wake.clear()
        entry = await self._schedule.earliest()
        # redis-py may have spent the task's cancellation on that read (gateway.tasks).
        check_cancelled()
        if entry is None:
            await self._wake.wait()
            return
        delay = entry.deadline - time.time()
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            return
        # The lines about this run carry its ids (the task itself carries none).
        with logs.bound(run_id=entry.run_id, thread_id=entry.thread_id):
            try:
                rearmed = await self._expire(entry)
            except Exception:
                # One run's failure must not end the watch over every other run (STYLE 4);
                # CancelledError is a BaseException and still stops the task.
                log.exception("run %s: could not settle its expired action", entry.run_id)
                rearmed = False
            if not rearmed:
                await self._schedule.discard(entry)

    async def _untouched(self, entry: ExpiryEntry) -> bool:
        """Still watched, and nothing reached the run's channel since the segment ended."""
        if await self._schedule.get(entry.run_id) != entry:
            return False
        stats = self._broker.channel_statistics(run_channel(entry.run_id))
        return stats is not None and not stats.ended and stats.last_seq == entry.seq

    async def _expire(self, entry: ExpiryEntry) -> bool:
        """Read the run and end its channels if it is over; True when re-armed."""
        if not await self._untouched(entry):
            return False
        lease = await self._leases.acquire(entry.run_id, _OWNER, ttl=_LEASE_TTL)
        if lease is None:
            # A relay is pumping the run: it reports the run's end.
            return False
        try:
            return await self._settle(entry)
        finally:
            await self._leases.release(lease)

    async def _settle(self, entry: ExpiryEntry) -> bool:
        found = None
        if not await self._claims.incoming(entry.run_id):
            try:
                async with asyncio.timeout(_FETCH_TIMEOUT):
                    found = await self._protocol.fetch_run(
                        self._upstream, entry.thread_id, entry.run_id, api_key=entry.api_key
                    )
            except TimeoutError:
                log.warning("run %s: no answer within %gs", entry.run_id, _FETCH_TIMEOUT)
            if not await self._untouched(entry):
                return False
        if found is None or found[0] not in self._protocol.terminal_statuses:
            # Still waiting (clock skew), a submission in flight, or the upstream cannot tell.
            if entry.retried:
                log.warning("run %s: still not over after its action expired", entry.run_id)
                return False
            retry = time.time() + max(self._grace, 1.0)
            await self._schedule.put(msgspec.structs.replace(entry, deadline=retry, retried=True))
            return True
        status, data = found
        out = RunPublisher(self._broker, None, run_id=entry.run_id, thread_id=entry.thread_id)
        settled = self._protocol.settled_event(status, data)
        await out.emit_batch([settled, self._protocol.end_of_segment])
        await out.close_run()
        if self._on_over is not None:
            await self._on_over(entry.run_id)
        return False
