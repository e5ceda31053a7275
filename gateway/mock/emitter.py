"""The engine's side of a stream: a byte buffer of SSE frames flushed to the attached sink.

Frames are appended to one ``bytearray`` and written in batches of about ``batch_bytes``
(default 64 KiB), so a fast stream costs one socket write per few hundred events. Without a sink
(non-streamed runs, a client that left, after a ``drop``) nothing is encoded: ``active`` is False
and :meth:`event` returns at once, which lets the engine skip frame building altogether.
"""

from __future__ import annotations

import asyncio

import msgspec

from gateway.mock.frames import DONE, frame
from gateway.mock.objects import ENCODER
from gateway.mock.pacing import Cadence
from gateway.mock.sink import StreamSink

__all__ = ["Emitter"]


class Emitter:
    """Buffered SSE writer for one run; at most one sink (one HTTP stream) at a time."""

    __slots__ = ("_cadence", "batch_bytes", "buf", "sink")

    def __init__(self, batch_bytes: int) -> None:
        self.batch_bytes = batch_bytes
        self.buf = bytearray()
        self.sink: StreamSink | None = None
        self._cadence: Cadence | None = None

    @property
    def active(self) -> bool:
        return self.sink is not None

    def attach(self, sink: StreamSink) -> None:
        self.close()
        self.sink = sink
        if self._cadence is not None:
            self._cadence.restart()

    def event(self, name: bytes, obj: msgspec.Struct) -> None:
        """Queue ``event: name`` with ``obj`` encoded now (a snapshot of its current state)."""
        if self.sink is not None:
            self.buf += frame(name, ENCODER.encode(obj))

    def raw(self, data: bytes) -> None:
        if self.sink is not None:
            self.buf += data

    async def flush(self) -> None:
        """Write the buffer out, then yield to the loop once (a fast writer must not starve it)."""
        sink = self.sink
        if sink is not None and self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            if not await sink.write(data):
                self.sink = None
        await asyncio.sleep(0)

    async def pace(self, delay: float) -> None:
        """After one delta: with a ``delay``, send it and wait for the next one's turn (a fixed
        schedule, ``pacing.Cadence``); else flush only a full batch."""
        if delay:
            await self.flush()
            if self._cadence is None or self._cadence.delay != delay:
                self._cadence = Cadence(delay)
            if wait := self._cadence.wait():
                await asyncio.sleep(wait)
        elif len(self.buf) >= self.batch_bytes:
            await self.flush()

    async def finish(self, *, done: bool = True) -> None:
        """End this HTTP stream, with ``event: done`` unless ``done`` is False (spec §2.4)."""
        if self.sink is None:
            return
        if done:
            self.buf += DONE
        await self.flush()
        self.close()

    async def drop(self) -> None:
        """Flush, then cut the connection mid-body (no ``done``, no final chunk)."""
        if self.sink is None:
            return
        await self.flush()
        if self.sink is not None:
            self.sink.abort()
        self.sink = None

    def close(self) -> None:
        """Detach, ending the stream where it is; unflushed frames are discarded."""
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        self.buf.clear()
