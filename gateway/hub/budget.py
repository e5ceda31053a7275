"""The broker's global memory budget: which channel gives up memory when all of them hold too much.

Per-channel history limits do not bound a process with many channels, so every channel charges
what it retains (history, reducer estimate, cached snapshot) to ``HubCounters.retained_bytes``
(``channel.py``) and, after each change that can grow it, :meth:`MemoryBudget.enforce` brings it
back within ``HubSettings.memory_budget``:

1. ended channels are dropped whole, the one that ended first first (as if their retention were
   over: a late subscriber gets 404, as after retention);
2. then the oldest history across the open channels, by publish generation: each publish gets the
   next generation, and a heap orders the open channels by the generation of their oldest event.
   A subscriber resuming from an evicted position gets ``runcast.history_lost`` and the snapshot;
   connected subscribers lose nothing (what was written to them is in their own buffers).

Reducer state of open channels is never evicted (it is the snapshot that replaces history), so
when it alone exceeds the budget, history is all that goes and the budget is exceeded.

Freed memory and the process size. The hub frees what it drops (measured: no object of a dropped
channel stays referenced), but glibc's malloc keeps freed pages inside its heap, so RSS stays at
its peak. The same holds for subscribers: each costs about 13 KiB while connected (aiohttp's
request, parser and tasks, the transport, the sink; ``bench/connect_bench.py``), all of it freed
when it leaves (tracemalloc: 1.7 MiB of Python objects left after 5,000 came and went), yet
10,000 that left kept 68 MiB of RSS (32-52 MiB with the trim below; the rest is arenas that
stay partly used, and is reused: three storms of 10,000 in a row peak at the same RSS). Once
retained bytes have fallen by :data:`TRIM_AFTER_BYTES`
from their peak, or the subscribers by :data:`TRIM_AFTER_SUBSCRIBERS` from theirs (as seen by the
sweeps), the broker's housekeeping calls ``malloc_trim(0)`` (glibc only, in a worker thread) to
hand those pages back.

The heap is lazy: an entry whose channel was dropped, ended, or whose oldest event changed is
fixed when it reaches the top, and :meth:`MemoryBudget.compact` (from the broker's sweep)
rebuilds it once stale entries outnumber the channels.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import sys
from collections.abc import Callable, Collection

from gateway.hub.channel import Channel
from gateway.hub.counters import HubCounters

__all__ = ["TRIM_AFTER_BYTES", "TRIM_AFTER_SUBSCRIBERS", "MemoryBudget", "malloc_trim"]

TRIM_AFTER_BYTES = 32 * 1024 * 1024
"""A drop from the peak worth a ``malloc_trim`` (it walks the whole heap: not for every event)."""
TRIM_AFTER_SUBSCRIBERS = 2_000
"""Subscribers gone since their peak worth a ``malloc_trim``: about 26 MiB of connection state."""


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


malloc_trim = _find_malloc_trim()
"""glibc's ``malloc_trim`` (None elsewhere): returns the free pages of malloc's heap to the OS."""


class MemoryBudget:
    """Eviction order and accounting of one broker's channels against ``limit`` bytes."""

    __slots__ = (
        "_counters",
        "_ended",
        "_gen",
        "_heap",
        "_last_subscribers",
        "_peak",
        "_peak_subscribers",
        "_tiebreak",
        "channels_evicted",
        "events_evicted",
        "limit",
    )

    def __init__(self, limit: int, counters: HubCounters) -> None:
        if limit <= 0:
            raise ValueError("memory budget must be > 0")
        self.limit = limit
        self._counters = counters
        # Insertion order is end order: the first key ended first.
        self._ended: dict[Channel, None] = {}
        self._heap: list[tuple[int, int, Channel]] = []
        self._tiebreak = itertools.count()
        self._gen = 0
        self._peak = 0
        self._peak_subscribers = 0
        self._last_subscribers = 0
        self.channels_evicted = 0
        self.events_evicted = 0

    @property
    def used(self) -> int:
        return self._counters.retained_bytes

    def next_gen(self) -> int:
        """The generation of the next publish (one per publish call, for all its channels)."""
        self._gen += 1
        return self._gen

    # -- what the broker reports ----------------------------------------------------------------

    def published(self, channel: Channel, *, reopened: bool) -> None:
        """``channel`` got events (``reopened``: it had ended); its history is ordered by age."""
        if reopened:
            self._ended.pop(channel, None)
        if not channel.in_budget_heap:
            self._push(channel)

    def ended(self, channel: Channel) -> None:
        self._ended.pop(channel, None)
        self._ended[channel] = None

    def forget(self, channel: Channel) -> None:
        """The broker dropped ``channel`` (its heap entry goes when it reaches the top)."""
        self._ended.pop(channel, None)

    # -- eviction -------------------------------------------------------------------------------

    def enforce(self, drop: Callable[[Channel], None]) -> None:
        """Evict until within the limit: ended channels through ``drop`` (the broker forgets
        them), then the oldest history of open channels."""
        counters = self._counters
        if counters.retained_bytes > self._peak:
            self._peak = counters.retained_bytes
        if counters.retained_bytes <= self.limit:
            return
        ended = self._ended
        while ended and counters.retained_bytes > self.limit:
            channel = next(iter(ended))
            del ended[channel]
            drop(channel)
            self.channels_evicted += 1
        heap = self._heap
        while heap and counters.retained_bytes > self.limit:
            gen, _, channel = heapq.heappop(heap)
            channel.in_budget_heap = False
            oldest = channel.oldest_gen
            if oldest is None or channel.ended:
                continue  # dropped, emptied or ended since it was pushed
            if oldest == gen:
                # Up to the next channel's oldest event: the oldest history overall goes first.
                through = heap[0][0] if heap else self._gen
                held = channel.history_events
                channel.evict_history(counters.retained_bytes - self.limit, through_gen=through)
                self.events_evicted += held - channel.history_events
            self._push(channel)

    def note_peak(self) -> None:
        """Called after each publish within the limit (``enforce`` does it otherwise)."""
        if self._counters.retained_bytes > self._peak:
            self._peak = self._counters.retained_bytes

    def trim_due(self) -> bool:
        """True (once) when retained bytes, or subscribers, fell far enough from their peak to
        trim the heap. Called by every sweep, which is also when the subscribers' peak is seen;
        a drop of subscribers counts once their number held still for a sweep, so that the
        connections they leave behind (closed just after the hub lets go of them) are freed."""
        used = self._counters.retained_bytes
        subscribers = self._counters.subscribers
        settled, self._last_subscribers = subscribers == self._last_subscribers, subscribers
        if subscribers > self._peak_subscribers:
            self._peak_subscribers = subscribers
        if malloc_trim is None:
            return False
        if self._peak - used < TRIM_AFTER_BYTES and not (
            settled and self._peak_subscribers - subscribers >= TRIM_AFTER_SUBSCRIBERS
        ):
            return False
        self._peak = used
        self._peak_subscribers = subscribers
        return True

    def compact(self, channels: Collection[Channel]) -> None:
        """Rebuild the heap from the broker's ``channels`` once stale entries (channels dropped
        by expiry) outnumber them, so the heap never keeps dropped channels for long."""
        if len(self._heap) <= 2 * len(channels) + 64:
            return
        self._heap = []
        for channel in channels:
            channel.in_budget_heap = False
            if not channel.ended:
                self._push(channel)

    def _push(self, channel: Channel) -> None:
        oldest = channel.oldest_gen
        if oldest is None:
            return
        channel.in_budget_heap = True
        heapq.heappush(self._heap, (oldest, next(self._tiebreak), channel))
