"""``--processes N``: the virtual users spread over N generator processes, their stats merged.

Each worker is a spawned process running the same loops on its share of the load (users, runs
and rates divided by N; a ramp's users dealt out in turn, ``loops.Lane``) against the same URLs, on a timeline sharing the parent's
start time. It sends its stats (they pickle; histograms merge exactly) every half second for
the progress display and once more at its end. The parent owns the workers: it stops them
through an event on Ctrl+C or SIGTERM (which the workers ignore) and joins them in ``finally``;
a worker whose parent was killed outright stops within half a second and exits.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import msgspec

from gateway.errors import ConfigError
from gateway.heap import tune_collector

from .settings import LoadSettings
from .stats import LoadStats

__all__ = ["run_in_processes", "share"]

_SNAPSHOT_S = 0.5
_POLL_S = 0.05
_JOIN_S = 10.0


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def share(settings: LoadSettings, url: str, index: int) -> LoadSettings:
    """Worker ``index``'s part of the load, aimed at the already running ``url`` (each part is
    a valid load: ``LoadSettings`` refuses a split that is not)."""
    n = settings.processes
    ramp = settings.ramp
    stages = settings.stages
    if stages is not None and settings.rate is not None:
        # Levels of arrivals per second divide; levels of users stay whole, each worker running
        # its lane of them (loops.Lane).
        ramp = ",".join(f"{s.level / n:g}:{s.seconds:g}" for s in stages)
    return msgspec.structs.replace(
        settings,
        target=url,
        embedded=False,
        processes=1,
        concurrency=_split(settings.concurrency, n, index),
        # The run limit, not --runs: without one, each worker would run the default 100.
        runs=None if settings.run_limit is None else _split(settings.run_limit, n, index),
        rate=None if settings.rate is None else settings.rate / n,
        ramp=ramp,
        json_path=None,
        plot_path=None,
    )


def _worker(
    settings: LoadSettings,
    urls: list[str],
    t0: float,
    index: int,
    out: Any,
    stop: ProcessEvent,
    parent: int,
    processes: int,
) -> None:
    from .loops import Lane, execute

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the parent decides when to stop
    tune_collector()  # as the parent: its own pauses would be in every figure

    def orphaned() -> bool:
        return os.getppid() != parent

    async def main() -> list[LoadStats]:
        stats = [LoadStats() for _ in urls]
        stopped = asyncio.Event()

        async def report() -> None:
            while True:
                await asyncio.sleep(_SNAPSHOT_S)
                if stop.is_set() or orphaned():  # a parent killed outright cannot tell us
                    stopped.set()
                out.put(("tick", index, stats))

        reporter = asyncio.create_task(report())
        try:
            return await execute(
                settings, urls, stop=stopped, stats=stats, t0=t0, lane=Lane(index, processes)
            )
        finally:
            reporter.cancel()
            await asyncio.wait({reporter})

    try:
        out.put(("done", index, asyncio.run(main())))
    except ConfigError as exc:
        out.put(("error", index, str(exc)))
    if orphaned():
        out.cancel_join_thread()  # nobody reads the queue: exit without flushing it


def merged(per_worker: dict[int, list[LoadStats]], targets: int) -> list[LoadStats]:
    total = [LoadStats() for _ in range(targets)]
    for stats in per_worker.values():
        for mine, theirs in zip(total, stats, strict=True):
            mine.merge(theirs)
    return total


async def run_in_processes(
    settings: LoadSettings,
    urls: list[str],
    *,
    t0: float,
    stop: asyncio.Event,
    latest: dict[int, list[LoadStats]],
) -> list[LoadStats]:
    """Run the load in ``settings.processes`` workers; ``latest`` holds each one's last stats."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    stop_flag = context.Event()
    workers = [
        context.Process(
            target=_worker,
            args=(
                share(settings, urls[0], i),
                *(urls, t0, i, out, stop_flag, os.getpid(), settings.processes),
            ),
            name=f"runcast-loadtest-{i}",
        )
        for i in range(settings.processes)
    ]
    done: set[int] = set()
    error: str | None = None
    try:
        for worker in workers:
            worker.start()
        while len(done) < len(workers):
            if stop.is_set():
                stop_flag.set()
            try:
                kind, index, payload = out.get_nowait()
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    raise ConfigError(
                        "a load generator process died; see its error above"
                    ) from None
                await asyncio.sleep(_POLL_S)
                continue
            if kind == "error":
                error = error or payload
                done.add(index)
                stop_flag.set()
                continue
            latest[index] = payload
            if kind == "done":
                done.add(index)
    finally:
        stop_flag.set()
        for worker in workers:
            await asyncio.to_thread(worker.join, _JOIN_S)
            if worker.is_alive():
                worker.kill()
        out.close()
    if error is not None:
        raise ConfigError(error)
    return merged(latest, len(urls))
