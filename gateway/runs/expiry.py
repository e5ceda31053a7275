"""ActionExpiry: ends the channels of runs left at an unanswered ``requires_action`` once expired.

Theory of operation. A relay whose last segment ended at ``thread.run.requires_action`` that
runcast did not answer (no action handler, or the handler skipped it) leaves the run's channel
open for a client's submission. If none comes, the upstream expires the run at ``expires_at``
(spec §5) without any stream telling runcast. So the relay hands the run to this watcher, which
the :class:`~gateway.runs.registry.RelayRegistry` owns: one task sleeps until the earliest
deadline (``expires_at`` + ``grace``, the grace absorbing clock skew with the upstream), then reads
the run once (``GET .../runs/{run_id}``, spec §1.2). A terminal run is published as
``thread.run.<status>`` followed by ``done`` and its run channel is closed, as after a recovered
stream (``recovery.py``). A run still waiting is looked at once more, ``grace`` later, then left.

A watch is dropped as soon as anything else reaches the run's channel (a client's submission
through runcast continuing the run, whose relay takes over the run's end), checked against the
channel's last seq both before and after the read. Watches are bounded by ``max_watched`` (the
oldest are dropped first); the deadline heap is rebuilt when forgotten entries pile up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import time
from collections.abc import Callable

from gateway.hub import Broker
from gateway.upstream import UpstreamClient
from parsers.assistants import TERMINAL_RUN_STATUSES

from .channels import run_channel
from .pending import DONE, ActionClaims, fetch_run
from .publisher import RunPublisher
from .recovery import settled_event

__all__ = ["DEFAULT_GRACE", "ActionExpiry"]

log = logging.getLogger("runcast.relay")

DEFAULT_GRACE = 2.0
"""Seconds past ``expires_at`` before the run is read: ``expires_at`` has one-second resolution
and the upstream's clock is not ours."""

_FETCH_TIMEOUT = 10.0
"""Bound on the one read of a run: the watcher serves every watched run in turn."""


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class _Watch:
    run_id: str
    thread_id: str
    api_key: str | None
    seq: int
    """The run channel's seq of the segment's ``done``: anything later means the run went on."""
    deadline: float
    """Loop time."""
    retried: bool = False


class ActionExpiry:
    """Watches runs waiting at an unanswered action; one task, started on the first watch."""

    def __init__(
        self,
        broker: Broker,
        upstream: UpstreamClient,
        *,
        claims: ActionClaims,
        grace: float = DEFAULT_GRACE,
        max_watched: int = 100_000,
        on_over: Callable[[str], None] | None = None,
    ) -> None:
        self._broker = broker
        self._upstream = upstream
        self._claims = claims
        self._grace = grace
        self._max_watched = max_watched
        self._on_over = on_over
        self._watches: dict[str, _Watch] = {}
        self._heap: list[tuple[float, int, _Watch]] = []
        self._pushed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._watches)

    def watch(
        self, run_id: str, thread_id: str, *, expires_at: int, seq: int, api_key: str | None
    ) -> None:
        """Watch ``run_id``, whose segment ended with ``done`` at run seq ``seq``."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at + self._grace - time.time())
        self._watches.pop(run_id, None)
        while len(self._watches) >= self._max_watched:
            dropped = next(iter(self._watches))
            del self._watches[dropped]
            log.warning("run %s: too many runs waiting for an action; not watching it", dropped)
        watch = _Watch(run_id=run_id, thread_id=thread_id, api_key=api_key, seq=seq, deadline=0.0)
        self._watches[run_id] = watch
        self._arm(watch, loop.time() + delay)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="runcast-action-expiry")

    def forget(self, run_id: str) -> None:
        """The run goes on through runcast: its relay reports its end."""
        self._watches.pop(run_id, None)

    async def aclose(self) -> None:
        """Stop watching (idempotent): the channels left open are the broker's to end."""
        self._closed = True
        self._watches.clear()
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("action expiry watcher failed", exc_info=task.exception())

    # -- the task --------------------------------------------------------------------------

    def _arm(self, watch: _Watch, deadline: float) -> None:
        watch.deadline = deadline
        self._pushed += 1
        heapq.heappush(self._heap, (deadline, self._pushed, watch))
        if len(self._heap) > 2 * len(self._watches) + 64:
            self._heap = [entry for entry in self._heap if self._live(entry)]
            heapq.heapify(self._heap)
        self._wake.set()

    def _live(self, entry: tuple[float, int, _Watch]) -> bool:
        deadline, _, watch = entry
        return self._watches.get(watch.run_id) is watch and watch.deadline == deadline

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            while self._heap and not self._live(self._heap[0]):
                heapq.heappop(self._heap)
            if not self._heap:
                await self._wake.wait()
                continue
            delay = self._heap[0][0] - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            watch = heapq.heappop(self._heap)[2]
            try:
                rearmed = await self._expire(watch)
            except Exception:
                # One run's failure must not end the watch over every other run (STYLE 4);
                # CancelledError is a BaseException and still stops the task.
                log.exception("run %s: could not settle its expired action", watch.run_id)
                rearmed = False
            if not rearmed and self._watches.get(watch.run_id) is watch:
                del self._watches[watch.run_id]

    def _untouched(self, watch: _Watch) -> bool:
        """Nothing reached the run's channel since the watched segment ended."""
        if self._watches.get(watch.run_id) is not watch:
            return False
        stats = self._broker.channel_statistics(run_channel(watch.run_id))
        return stats is not None and not stats.ended and stats.last_seq == watch.seq

    async def _expire(self, watch: _Watch) -> bool:
        """Read the run and end its channels if it is over; True when re-armed."""
        if not self._untouched(watch):
            return False
        found = None
        if not self._claims.incoming(watch.run_id):
            try:
                async with asyncio.timeout(_FETCH_TIMEOUT):
                    found = await fetch_run(
                        self._upstream, watch.thread_id, watch.run_id, api_key=watch.api_key
                    )
            except TimeoutError:
                log.warning("run %s: no answer within %gs", watch.run_id, _FETCH_TIMEOUT)
            if not self._untouched(watch):
                return False
        if found is None or found[0] not in TERMINAL_RUN_STATUSES:
            # Still waiting (clock skew), a submission in flight, or the upstream cannot tell.
            if watch.retried:
                log.warning("run %s: still not over after its action expired", watch.run_id)
                return False
            watch.retried = True
            self._arm(watch, asyncio.get_running_loop().time() + max(self._grace, 1.0))
            return True
        status, data = found
        out = RunPublisher(self._broker, None, run_id=watch.run_id, thread_id=watch.thread_id)
        await out.emit_batch([settled_event(status, data), DONE])
        await out.close_run()
        if self._on_over is not None:
            self._on_over(watch.run_id)
        return False
