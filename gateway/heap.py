"""The process heap and Python's cycle collector: the startup heap kept out of full collections,
and every collection's pause timed.

A full (generation 2) collection walks every object the collector tracks, and the event loop
stands still meanwhile: no event is relayed or written. What ``runcast serve`` holds once it
listens (modules, routes, settings, the simulator's tables: about 50,000 objects) lives as long
as the process and is never garbage, yet was walked by every full collection: 20-30 ms of each
pause, measured under ``runcast loadtest``. :func:`freeze_startup_heap` moves it to the
collector's permanent generation (``gc.freeze``), so full collections walk only what came after.

:class:`CollectorPauses` times each collection into a histogram of the app's registry
(``runcast_gc_pause_seconds{generation}``), so an operator sees the pauses that no request
metric explains. The collector is process-wide: every app in the process sees every pause.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["CollectorPauses", "freeze_startup_heap"]

_PAUSE = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def freeze_startup_heap() -> int:
    """Collect once, then keep every object alive now out of later collections; how many."""
    gc.collect()
    gc.freeze()
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
