"""The process heap and Python's cycle collector: the startup heap kept out of full collections,
and every collection's pause timed.

A full (generation 2) collection walks every object the collector tracks, and the event loop
stands still meanwhile: no event is relayed or written. What ``runcast serve`` holds once it
listens (modules, routes, settings, the simulator's tables: about 50,000 objects) lives as long
as the process and is never garbage, yet was walked by every full collection: 20-30 ms of each
pause, measured under ``runcast loadtest``. :func:`tune_collector` moves it to the
collector's permanent generation (``gc.freeze``), so full collections walk only what came after.

The collector's young generation is collected every ``YOUNG_THRESHOLD`` net allocations of
tracked objects instead of CPython's 700. A relayed event allocates a few dozen (parsed event,
frames, tasks' bookkeeping) and nearly all die young, freed by reference counting (a finished
run leaves no cycle): collecting every 700 walked them while alive and promoted the in-flight
ones, so older generations filled and were walked too. Under ``runcast loadtest
--concurrency 100 --subscribers-per-run 1`` (120 runs/s, 40 s) the collector stopped the loop
2.57 s in all at 700 (984 young, 89 middle and 9 full collections, the full ones ~95 ms each)
against 0.22 s at 50,000 (5 young ones, ~36 ms each); the gaps between deltas went from p99 73.8
/ p99.9 225 / max 241 ms to 59.9 / 86.5 / 102 ms, RSS the same (200 MB).

:class:`CollectorPauses` times each collection into a histogram of the app's registry
(``runcast_gc_pause_seconds{generation}``), so an operator sees the pauses that no request
metric explains. The collector is process-wide: every app in the process sees every pause.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["YOUNG_THRESHOLD", "CollectorPauses", "tune_collector"]

YOUNG_THRESHOLD = 50_000
"""Net allocations of tracked objects between young collections (CPython's default: 700)."""

_PAUSE = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def tune_collector() -> int:
    """Collect once, keep every object alive now out of later collections, and from now on
    collect the young generation every ``YOUNG_THRESHOLD`` allocations; how many were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return gc.get_freeze_count()


class CollectorPauses:
    """Times the cycle collector's pauses while installed (:meth:`install`, :meth:`remove`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._histogram = Histogram(
            "runcast_gc_pause_seconds",
            "Pauses of the Python cycle collector (the event loop stands still), by generation",
            ["generation"],
            buckets=_PAUSE,
            registry=registry,
        )
        self._by_generation = [self._histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)
