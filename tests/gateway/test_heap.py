"""gateway.heap: the startup heap frozen out of the collector, and the collector's pauses timed."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from gateway.heap import YOUNG_THRESHOLD, CollectorPauses, tune_collector


class Node:
    def __init__(self) -> None:
        self.refs: list[object] = []


def test_the_startup_heap_leaves_the_collectors_generations() -> None:
    alive = Node()
    assert any(o is alive for o in gc.get_objects())
    threshold = gc.get_threshold()
    try:
        assert tune_collector() > 0
        assert not any(o is alive for o in gc.get_objects())  # never walked again
        later = Node()
        assert any(o is later for o in gc.get_objects())
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert any(o is alive for o in gc.get_objects())


def test_pauses_are_timed_by_generation_while_installed() -> None:
    registry = CollectorRegistry()
    pauses = CollectorPauses(registry)

    def full() -> float:
        value = registry.get_sample_value("runcast_gc_pause_seconds_count", {"generation": "2"})
        assert value is not None
        return value

    pauses.install()
    pauses.install()  # once only
    try:
        gc.collect()
        assert full() == 1
        assert (
            registry.get_sample_value("runcast_gc_pause_seconds_sum", {"generation": "2"}) or 0
        ) > 0
    finally:
        pauses.remove()
    gc.collect()
    assert full() == 1
    assert not [cb for cb in gc.callbacks if getattr(cb, "__self__", None) is pauses]
