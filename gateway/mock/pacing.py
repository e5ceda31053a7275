"""Pacing and check points of a Responses or Chat driver writing to an :class:`EventLog`.

After each delta the driver calls :meth:`Pacer.after_delta`: with a ``delay_ms`` the frames go to
the readers at once and the driver waits for the next delta's turn (:class:`Cadence`: a fixed
schedule, as a model generates whether or not the last write was late); without, readers are
woken every ``yield_every``
deltas (their socket writes then carry many frames each; a driver that writes such a batch in
one loop calls :meth:`after_batch` once), and the driver waits there while a
foreground reader lags (``EventLog.drain``). A cancel wakes a pause at once; :meth:`check` raises
:class:`Stopped` at the next check point, and so does a stream nobody reads any more when
``stop_unread`` (a chat completion stops generating when its client leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.mock.eventlog import EventLog

__all__ = ["Cadence", "Pacer", "Stopped"]


class Stopped(Exception):
    """The script stops early (internal control flow, never escapes a driver)."""


class Cadence:
    """Deltas ``delay`` apart on a fixed schedule from the first: a delta sent late (a busy
    loop, a slow reader) is not followed by a longer gap, the next ones catch up. Late by a
    random few ms, two streams of the same script then stay the same few ms apart, instead of
    drifting apart by the sum of every delay so far."""

    __slots__ = ("_clock", "_due", "delay")

    def __init__(self, delay: float, *, clock: Callable[[], float] | None = None) -> None:
        self.delay = delay
        self._clock = clock  # None: the running loop's clock, the one its sleeps count on
        self._due = 0.0

    def restart(self) -> None:
        """The next delta starts a new schedule (a new HTTP stream of the same run)."""
        self._due = 0.0

    def wait(self) -> float:
        """Seconds until the next delta is due (0 when it already is)."""
        now = self._clock() if self._clock is not None else asyncio.get_running_loop().time()
        self._due = (self._due or now) + self.delay
        return max(self._due - now, 0.0)


class Pacer:
    """See the module docstring."""

    __slots__ = (
        "_cadence",
        "_cancel",
        "_deltas",
        "_wake",
        "delay",
        "log",
        "stop_unread",
        "yield_every",
    )

    def __init__(
        self, log: EventLog, *, delay: float, yield_every: int, stop_unread: bool = False
    ) -> None:
        self.log = log
        self.delay = delay
        self._cadence = Cadence(delay)
        self.yield_every = yield_every
        self.stop_unread = stop_unread
        self._deltas = 0
        self._cancel = False
        self._wake = asyncio.Event()

    @property
    def deltas(self) -> int:
        return self._deltas

    def cancel(self) -> None:
        self._cancel = True
        self._wake.set()

    def check(self) -> None:
        if self._cancel or (self.stop_unread and not self.log.wanted):
            raise Stopped

    async def after_delta(self) -> None:
        self._deltas += 1
        if self.delay:
            await self.flush()
            if wait := self._cadence.wait():
                await self.pause(wait)
        elif self._deltas % self.yield_every == 0:
            await self.flush()
        self.check()

    async def after_batch(self, count: int) -> None:
        """After ``count`` deltas written without a pause (no ``delay``): one flush for all."""
        self._deltas += count
        await self.flush()
        self.check()

    async def flush(self) -> None:
        """Hand the frames so far to the readers, wait for a lagging one, yield once."""
        log = self.log
        log.notify()
        await log.drain()
        await asyncio.sleep(0)

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if cancelled."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._cancel:
                    await self._wake.wait()
                    self._wake.clear()
