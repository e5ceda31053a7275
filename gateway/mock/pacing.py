"""Pacing and check points of a Responses or Chat driver writing to an :class:`EventLog`.

After each delta the driver calls :meth:`Pacer.after_delta`: with a ``delay_ms`` the frames go to
the readers at once and the driver sleeps; without, readers are woken every ``yield_every``
deltas (their socket writes then carry many frames each; a driver that writes such a batch in
one loop calls :meth:`after_batch` once), and the driver waits there while a
foreground reader lags (``EventLog.drain``). A cancel wakes a pause at once; :meth:`check` raises
:class:`Stopped` at the next check point, and so does a stream nobody reads any more when
``stop_unread`` (a chat completion stops generating when its client leaves).
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.mock.eventlog import EventLog

__all__ = ["Pacer", "Stopped"]


class Stopped(Exception):
    """The script stops early (internal control flow, never escapes a driver)."""


class Pacer:
    """See the module docstring."""

    __slots__ = ("_cancel", "_deltas", "_wake", "delay", "log", "stop_unread", "yield_every")

    def __init__(
        self, log: EventLog, *, delay: float, yield_every: int, stop_unread: bool = False
    ) -> None:
        self.log = log
        self.delay = delay
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
            await self.pause(self.delay)
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
