"""The bounded buffer between a run's relay pump and its creator's HTTP response.

The pump must never wait for the creator (issue contract: a slow creator never slows the run for
the subscribers), so :meth:`CreatorFeed.push` is synchronous and never blocks. The creator's
handler drains everything buffered in one :meth:`read` (one coalesced socket write). Overflow
policy: the subscribers' :class:`~gateway.hub.LagPolicy` over the bytes not yet handed to the
socket, with ``max_bytes`` as its limit (an event of any size fits a backlog within the limit, and
the events that follow it are not charged for it), so a creator reading at full speed gets at
least what a subscriber gets. Past it the buffer is dropped and the feed is marked ``lagged``; the
handler then ends the response with a final notice and the creator can resume from the run
channel (``GET /streams/runs/{run_id}?since=<last id>``). :meth:`CreatorFeed.stop` (the gateway
is shutting down before the run's end) lets the reader drain and marks the feed ``stopped``, so
the handler ends the response with ``runcast.shutdown`` instead of a silent end of body.

Once the creator's chunked response has started, :meth:`CreatorFeed.bind` hands the feed its
socket: from then on a push that finds nothing buffered is written at once (one HTTP chunk, one
``transport.write``), as the hub writes to subscribers, instead of waking the handler's task
for it on a later turn of the loop. The lag policy then applies to the socket's own backlog
(``transport.get_write_buffer_size()``). Anything already buffered is written by the handler
first, so the order never changes.
"""

from __future__ import annotations

import asyncio
from collections import deque

import msgspec

from gateway.hub import LagPolicy
from gateway.hub.frames import http_chunk

__all__ = ["CreatorFeed", "FeedStatistics"]


class FeedStatistics(msgspec.Struct, frozen=True, kw_only=True):
    buffered_bytes: int
    pushed_bytes: int
    lagged: bool
    finished: bool
    stopped: bool
    detached: bool


class CreatorFeed:
    """Single-producer (the pump), single-consumer (the creator's response) byte buffer."""

    __slots__ = (
        "_chunks",
        "_detached",
        "_finished",
        "_ids",
        "_lagged",
        "_policy",
        "_pushed",
        "_size",
        "_stopped",
        "_transport",
        "_wakeup",
        "last_id",
    )

    def __init__(self, max_bytes: int) -> None:
        self._policy = LagPolicy(max_bytes)
        self._chunks: deque[bytes] = deque()
        self._ids: deque[str] = deque(maxlen=1)
        self._size = 0
        self._pushed = 0
        self._lagged = False
        self._finished = False
        self._stopped = False
        self._detached = False
        self._wakeup = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self.last_id: str | None = None
        """The last ``id:`` handed to the reader, so the lag notice can say where to resume."""

    @property
    def accepting(self) -> bool:
        return not (self._lagged or self._finished or self._detached)

    @property
    def lagged(self) -> bool:
        return self._lagged

    @property
    def stopped(self) -> bool:
        """Ended by :meth:`stop` before the run's end (and not cut off before that)."""
        return self._stopped

    def push(self, data: bytes, *, event_id: str | None = None) -> bool:
        """Queue ``data`` for the creator; False once the feed no longer accepts (never blocks)."""
        if not self.accepting:
            return False
        transport = self._transport
        if transport is not None and not self._chunks and not transport.is_closing():
            if not self._policy.admits(transport.get_write_buffer_size(), len(data)):
                self._lag()
                return False
            transport.write(http_chunk(data))
            self._pushed += len(data)
            if event_id is not None:
                self.last_id = event_id
            return True
        if not self._policy.admits(self._size, len(data)):
            self._lag()
            return False
        self._chunks.append(data)
        self._size += len(data)
        self._pushed += len(data)
        if event_id is not None:
            self._ids.append(event_id)
        self._wakeup.set()
        return True

    def bind(self, transport: asyncio.Transport) -> None:
        """The creator's response has started, chunked, on ``transport``: later pushes that find
        nothing buffered are written to it at once (see the module docstring)."""
        self._transport = transport

    def _lag(self) -> None:
        self._lagged = True
        self._chunks.clear()
        self._size = 0
        self._wakeup.set()

    def finish(self) -> None:
        """No more data will come (the run segment ended); the reader drains and stops."""
        self._finished = True
        self._wakeup.set()

    def stop(self) -> None:
        """The gateway is shutting down: no more data; the reader drains, then is told why."""
        if self.accepting:
            self._stopped = True
        self.finish()

    def detach(self) -> None:
        """The creator went away; further pushes are dropped."""
        self._detached = True
        self._transport = None
        self._chunks.clear()
        self._size = 0
        self._wakeup.set()

    async def read(self) -> bytes | None:
        """All buffered bytes joined; None once the feed has ended (finished, lagged, detached)."""
        while True:
            if self._chunks and not self._lagged:
                data = b"".join(self._chunks)
                self._chunks.clear()
                if self._ids:
                    self.last_id = self._ids.pop()
                self._size = 0
                self._wakeup.clear()
                return data
            if not self.accepting:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(
            buffered_bytes=self._size,
            pushed_bytes=self._pushed,
            lagged=self._lagged,
            finished=self._finished,
            stopped=self._stopped,
            detached=self._detached,
        )
