"""Readiness: how a relay reports its start, once, as trio's ``task_status`` does.

A relay (a :class:`~gateway.runs.relay.RunRelay` or a
:class:`~gateway.runs.protocols.relay.StreamRelay`) marks its ``ready`` started once it knows
what the creator's response head needs (the run's or stream's id, so the head can carry it and
its subscribe token), or failed with the upstream's error when that came before any event (an
HTTP error such as 400 "active run", a timeout): then nothing was published. The registry's
``start`` and the creator wait on it.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["Readiness"]

StartT = TypeVar("StartT")


class Readiness(Generic[StartT]):
    """A relay's start, reported once: :meth:`started` with its ids, or :meth:`failed`.

    Waiters never own the relay: one that is cancelled (a creator that leaves) leaves the relay
    running, and a failure nobody waits for is not an unretrieved exception.
    """

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._value: StartT | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    @property
    def has_started(self) -> bool:
        """Reported :meth:`started`: the creator's response is a stream (or about to be)."""
        return self.done and self._error is None

    def started(self, value: StartT) -> None:
        if not self.done:
            self._value = value
            self._event.set()

    def failed(self, exc: BaseException) -> None:
        if not self.done:
            self._error = exc
            self._event.set()

    async def wait(self) -> StartT:
        """The relay's start; raises the failure that came before it."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value
