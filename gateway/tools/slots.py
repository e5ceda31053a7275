"""``FairSlots``: the gateway-wide handler slots (``--tool-concurrency``), shared fairly by actions.

A plain semaphore wakes its waiters first come, first served, so one action with hundreds of
parallel calls held every slot until all of them had run, and another run's single quick call
waited behind them (26 s behind 300 calls of 3 s at the default 32 slots). Here each action
waits in a queue of its own, and a freed slot goes to the waiting action that holds the fewest
slots (ties in turn): an action alone still gets every slot, and a newcomer gets the next one
that frees up, however long the others' backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable

__all__ = ["FairSlots"]


class FairSlots:
    """``limit`` slots; :meth:`acquire` waits for one on behalf of ``key`` (an action), and
    :meth:`release` gives it back, to the waiting action holding the fewest."""

    __slots__ = ("_free", "_held", "_waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self._free = limit
        self._held: dict[Hashable, int] = {}
        # Actions with a call waiting, in turn order for ties (a dict keeps insertion order).
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, key: Hashable) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self._held[key] = self._held.get(key, 0) + 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(key)  # handed a slot just as it was cancelled: pass it on
            else:
                queue = self._waiting.get(key)
                if queue is not None and granted in queue:
                    queue.remove(granted)
                    if not queue:
                        del self._waiting[key]
            raise

    def release(self, key: Hashable) -> None:
        held = self._held
        left = held[key] - 1
        if left:
            held[key] = left
        else:
            del held[key]
        waiting = self._waiting
        while waiting:
            turn = min(waiting, key=lambda k: held.get(k, 0))
            queue = waiting.pop(turn)
            granted = queue.popleft()
            if queue:
                waiting[turn] = queue  # to the back: ties go round in turn
            if not granted.done():
                granted.set_result(None)
                held[turn] = held.get(turn, 0) + 1
                return
        self._free += 1
