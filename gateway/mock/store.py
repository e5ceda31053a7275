"""Bounded in-memory state of the simulator: assistants, threads and what each thread owns.

Two LRU maps with an idle TTL (:class:`LRUStore`) hold assistants and threads. A thread record owns
its messages and runs (insertion-ordered, capped, oldest dropped first) and each run owns its
steps, so dropping a thread drops everything under it and memory stays flat however long a load
test runs. Expired entries sit at the LRU end and are swept on every insert (amortised O(1), no
background task). Eviction of a thread calls ``on_evict`` so the engine can stop its run drivers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from gateway.mock.objects import Assistant, Message, Run, RunStep, Thread
from gateway.mock.settings import MockSettings

__all__ = ["LRUStore", "MockStore", "RunRecord", "ThreadRecord"]

V = TypeVar("V")


class LRUStore(Generic[V]):
    """A map capped at ``max_items`` entries, each dropped ``ttl`` seconds after its last use."""

    def __init__(
        self,
        *,
        max_items: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[V], None] | None = None,
    ) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._max_items = max_items
        self._ttl = ttl
        self._clock = clock
        self._on_evict = on_evict
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now - entry[0] > self._ttl:
            self._evict(key)
            return None
        self._items[key] = (now, entry[1])
        self._items.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: V) -> None:
        now = self._clock()
        self._items[key] = (now, value)
        self._items.move_to_end(key)
        self._sweep(now)

    def discard(self, key: str) -> None:
        """Forget ``key`` (no eviction callback: its owner is done with it)."""
        self._items.pop(key, None)

    def values(self) -> Iterator[V]:
        return (value for _, value in self._items.values())

    def _sweep(self, now: float) -> None:
        items = self._items
        while items:
            key, (used, _) = next(iter(items.items()))
            if len(items) <= self._max_items and now - used <= self._ttl:
                break
            self._evict(key)

    def _evict(self, key: str) -> None:
        _, value = self._items.pop(key)
        self.evictions += 1
        if self._on_evict is not None:
            self._on_evict(value)


class RunRecord:
    """A run, its steps, and the live driver while the run is not terminal."""

    __slots__ = ("driver", "run", "steps")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.steps: OrderedDict[str, RunStep] = OrderedDict()
        self.driver: Any = None


class ThreadRecord:
    """A thread with its capped message and run histories and the id of its active run."""

    __slots__ = ("_max_messages", "_max_runs", "active_run_id", "messages", "runs", "thread")

    def __init__(self, thread: Thread, *, max_messages: int, max_runs: int) -> None:
        self.thread = thread
        self.messages: OrderedDict[str, Message] = OrderedDict()
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self.active_run_id: str | None = None
        self._max_messages = max_messages
        self._max_runs = max_runs

    def add_message(self, message: Message) -> None:
        self.messages[message.id] = message
        while len(self.messages) > self._max_messages:
            self.messages.popitem(last=False)

    def add_run(self, record: RunRecord) -> None:
        self.runs[record.run.id] = record
        # The newest run is the only one that can be active, so dropping the oldest is safe.
        while len(self.runs) > self._max_runs:
            self.runs.popitem(last=False)


class MockStore:
    """Assistants and threads of one simulator app, bounded by the settings' caps and TTL."""

    def __init__(
        self,
        settings: MockSettings,
        *,
        on_thread_evicted: Callable[[ThreadRecord], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.assistants: LRUStore[Assistant] = LRUStore(
            max_items=settings.max_assistants, ttl=settings.ttl_s, clock=clock
        )
        self.threads: LRUStore[ThreadRecord] = LRUStore(
            max_items=settings.max_threads,
            ttl=settings.ttl_s,
            clock=clock,
            on_evict=on_thread_evicted,
        )

    def add_thread(self, thread: Thread) -> ThreadRecord:
        record = ThreadRecord(
            thread,
            max_messages=self._settings.max_messages_per_thread,
            max_runs=self._settings.max_runs_per_thread,
        )
        self.threads.put(thread.id, record)
        return record
