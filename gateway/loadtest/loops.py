"""How a load starts its runs, and the task that owns them all: ``execute``.

Load shapes: a closed loop of ``concurrency`` virtual users (``ramp`` moves how many are
active), or with ``rate`` an open loop of arrivals (constant or Poisson gaps, ``ramp`` moves the
rate) with at most ``concurrency`` runs in flight (later arrivals are counted as dropped). With
``compare`` the same load goes to a second target at the same time, each with its own stats, in
pairs: each start is a run against both, begun together, and the added latency is measured per
pair, event by event (the target's latency of its k-th upstream event minus the compared
server's), so that a host busy at that moment delays both sides of the difference alike.

Everything is owned: the load's starts run in one task group (a pair's two runs in one of their
own), and the whole load in a task that ``execute`` cancels on ``stop``, at the time limit or
when a target has refused every run for ``give_up`` seconds; runs cut off that way count as
``cut``, not failed. While a target refuses runs (its connections, or answers saying the load is
misdirected: a redirect not followed, 401, 403, 404, 405), each virtual user pauses between
runs (``TargetLoad.pause``) instead of failing thousands of runs a second.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Coroutine
from typing import Any, NamedTuple

import aiohttp

from gateway.errors import ConfigError

from .accounting import RunRecord
from .driver import TargetLoad
from .protocols import FatalLoadError
from .settings import LoadSettings
from .shape import arrivals, level_at
from .stats import LoadStats
from .subscribers import no_websocket_redirects

__all__ = ["ALONE", "Lane", "execute", "ramp_users"]

_RAMP_RECHECK_S = 0.05
_LOOP_LAG_TICK_S = 0.1
_GIVE_UP_TICK_S = 0.25


class _Budget:
    """Run starts left (shared by every user of one target)."""

    def __init__(self, limit: int | None, deadline: float | None) -> None:
        self.left = math.inf if limit is None else limit
        self.deadline = deadline

    def claim(self) -> bool:
        if self.left <= 0:
            return False
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


class _Starts:
    """What one start of the load is: a run against the target, or with ``--compare`` a pair of
    runs begun together whose events are compared one by one."""

    def __init__(self, loads: list[TargetLoad]) -> None:
        self._loads = loads

    @property
    def in_flight(self) -> int:
        return self._loads[0].in_flight

    def pause(self) -> float:
        return max(load.pause() for load in self._loads)

    def drop(self) -> None:
        for load in self._loads:
            load.stats.arrivals_dropped += 1

    async def run(self) -> None:
        if len(self._loads) == 1:
            await self._loads[0].measured_run()
            return
        ours, theirs = self._loads
        async with asyncio.TaskGroup() as tg:
            mine = tg.create_task(ours.measured_run())
            other = tg.create_task(theirs.measured_run())
        a, b = mine.result(), other.result()
        if a is not None and b is not None:
            _record_pair(ours.stats, a, b)


def _record_pair(stats: LoadStats, ours: RunRecord, theirs: RunRecord) -> None:
    """Each upstream event's latency (from its run's first request) through the target minus
    the same event's through the compared server; and the same for the first event."""
    for mine, other in zip(ours.times, theirs.times, strict=False):
        stats.added_event.record((mine - ours.sent) - (other - theirs.sent))
    if ours.ttfe is not None and theirs.ttfe is not None:
        stats.added_ttfe.record(ours.ttfe - theirs.ttfe)


class Lane(NamedTuple):
    """Which of the ramp's users a process runs: those whose index is ``part`` modulo ``parts``
    (``--processes``), so that the ramp's level counts users across every process."""

    part: int
    parts: int


ALONE = Lane(0, 1)
"""The lane of a load in one process: every user."""


def ramp_users(settings: LoadSettings, lane: Lane = ALONE) -> range:
    """The indices of the closed-loop users this process runs (user ``g`` is active while the
    ramp's level is above ``g``); without a ramp, ``concurrency`` users of its own."""
    stages = settings.stages
    if stages is None:
        return range(settings.concurrency)
    users = max(1, math.ceil(max(stage.level for stage in stages)))
    return range(lane.part, users, lane.parts)


async def _closed_loop(
    load: _Starts, settings: LoadSettings, started: float, budget: _Budget, lane: Lane
) -> None:
    stages = settings.stages

    async def user(index: int) -> None:
        while True:
            if stages is not None:
                while index >= level_at(stages, time.perf_counter() - started):
                    if budget.deadline is not None and time.perf_counter() >= budget.deadline:
                        return
                    await asyncio.sleep(_RAMP_RECHECK_S)
            if not budget.claim():
                return
            await load.run()
            if pause := load.pause():
                await asyncio.sleep(pause)

    async with asyncio.TaskGroup() as tg:
        for index in ramp_users(settings, lane):
            tg.create_task(user(index))


async def _open_loop(
    load: _Starts, settings: LoadSettings, started: float, budget: _Budget, lane: Lane
) -> None:
    assert settings.rate is not None
    stages = settings.stages
    rate = settings.rate

    def rate_at(t: float) -> float:
        return rate if stages is None else level_at(stages, t)

    horizon = math.inf if budget.deadline is None else budget.deadline - started
    poisson = settings.arrival == "poisson"
    async with asyncio.TaskGroup() as tg:
        for offset in arrivals(rate_at, poisson=poisson, rng=random.Random(), horizon=horizon):
            # Open loop: the schedule holds whatever the target's speed (no coordinated omission).
            await asyncio.sleep(max(started + offset - time.perf_counter(), 0.0))
            if load.in_flight >= settings.concurrency:
                load.drop()
            elif budget.claim():
                tg.create_task(load.run())
            else:
                return


async def _give_up(loads: list[TargetLoad], after: float) -> None:
    """Returns once a target has refused every run for ``after`` seconds (its connections, or
    with answers saying the load is misdirected), saying so in its stats."""
    while True:
        await asyncio.sleep(min(_GIVE_UP_TICK_S, after / 4))
        for load in loads:
            since = load.refused_since
            if since is not None and time.perf_counter() - since >= after:
                kind = load.refusal
                reason = load.stats.error_details.get(kind) or (
                    f"cannot reach {load.root}" if kind == "connection" else kind
                )
                load.stats.gave_up = f"{reason} for {after:g} s: load stopped"
                return


async def _loop_lag(stats: LoadStats) -> None:
    """How late the event loop wakes up: the generator's own saturation, seen from inside."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(_LOOP_LAG_TICK_S)
        stats.loop_lag.record(max(time.perf_counter() - before - _LOOP_LAG_TICK_S, 0.0))


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event | None) -> bool:
    """Run ``work`` unless ``stop`` is set first (then it is cancelled); whether it ran."""
    task = asyncio.create_task(work)
    if stop is None:
        await task
        return True
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task, stopped})
    if task.cancelled():
        return False
    task.result()
    return True


async def execute(
    settings: LoadSettings,
    urls: list[str],
    *,
    stop: asyncio.Event | None = None,
    stats: list[LoadStats] | None = None,
    t0: float | None = None,
    lane: Lane = ALONE,
) -> list[LoadStats]:
    """Run the load against each server root in ``urls`` (the target, then ``--compare``).

    Returns one LoadStats per URL (filled in place when ``stats`` is given, so a progress display
    can read them while the load runs). ``t0`` is the wall-clock start of the timeline; ``lane``,
    this process's share of a ramp's users (``--processes``).
    """
    results = stats if stats is not None else [LoadStats() for _ in urls]
    t0 = time.time() if t0 is None else t0
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.connect_timeout, sock_read=settings.idle_timeout
    )
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, middlewares=(no_websocket_redirects,)
    ) as session:
        loads = [
            TargetLoad(settings, session, url, result, t0=t0)
            for url, result in zip(urls, results, strict=True)
        ]
        for load in loads:
            if not await _unless_stopped(load.prepare(), stop):
                return results  # Ctrl+C while a target was probed: nothing was started
        started = time.perf_counter()
        cpu_before = time.process_time()
        limit = settings.time_limit
        deadline = None if limit is None else started + limit
        loop = _open_loop if settings.rate is not None else _closed_loop

        budget = _Budget(settings.run_limit, deadline)
        load_task = asyncio.create_task(loop(_Starts(loads), settings, started, budget, lane))
        stopped = asyncio.create_task((stop or asyncio.Event()).wait())
        lag = asyncio.create_task(_loop_lag(results[0]))
        # Without a give-up time, a task that never ends stands in for the watch.
        gone = asyncio.create_task(
            _give_up(loads, settings.give_up) if settings.give_up else asyncio.Event().wait()
        )
        tasks = {load_task, stopped, lag, gone}
        try:
            await asyncio.wait(
                {load_task, stopped, gone}, timeout=limit, return_when="FIRST_COMPLETED"
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            for result in results:
                result.elapsed = elapsed
            results[0].cpu_s = cpu
            results[0].max_cpu_fraction = cpu / elapsed if elapsed > 0 else 0.0
        if not load_task.cancelled():
            exc = load_task.exception()
            if exc is not None:
                _raise_fatal(exc)
    return results


def _raise_fatal(exc: BaseException) -> None:
    """A FatalLoadError deep in the task groups becomes one ConfigError line."""
    if isinstance(exc, BaseExceptionGroup):
        fatal, _rest = exc.split(FatalLoadError)
        if fatal is not None:
            first: BaseException = fatal
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise ConfigError(str(first)) from None
    raise exc
