"""Subscriber outputs: pre-encoded bytes written straight to a socket, with a bounded backlog.

:class:`TransportSink` is what the SSE and WebSocket endpoints attach. ``send`` is one
``transport.write`` of bytes shared by all subscribers: no task, no await, no copy per subscriber.
While a socket is busy the transport's buffer absorbs what follows, so everything queued goes out
together when the peer reads (coalescing). The backlog is bounded by ``buffer_limit`` bytes
(``transport.get_write_buffer_size()``, the hub's own pending bytes before the response has
started) under the :class:`~gateway.hub.backlog.LagPolicy` (an event of any size fits a backlog
within the limit): past it the subscriber gets a final ``runcast.lagged`` notice and is finished
(spec: fan-out design and slow consumers), so it can never slow the publisher or other
subscribers. A sink ended by the broker's shutdown writes ``runcast.shutdown`` (with ``retry:``
on SSE) after everything else it was given.

:class:`BufferSink` keeps the bytes in memory, for in-process consumers and tests.
"""

from __future__ import annotations

import asyncio

from gateway.hub import frames
from gateway.hub.backlog import LagPolicy
from gateway.hub.broker import (
    LAGGED_EVENT,
    SHUTDOWN_EVENT,
    SHUTDOWN_RETRY_MS,
    EndReason,
    FrameFormat,
    Position,
    lagged_payload,
)

__all__ = ["MISSED_PONGS", "BufferSink", "TransportSink"]

MISSED_PONGS = 2
"""Heartbeats a WebSocket peer may leave unanswered; at the next one it is cut off (with the
default 15 s heartbeat, 30 s after the first ping it ignored)."""


class _SinkBase:
    __slots__ = ("_format", "_reason", "_waiter", "epoch", "last_seq")

    def __init__(self, frame_format: FrameFormat) -> None:
        self._format = frame_format
        self._reason: EndReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.last_seq = 0
        """Seq of the last event handed to the output (0 before any)."""
        self.epoch = ""
        """Epoch of the channel's seqs (given by :meth:`start`)."""

    @property
    def frame_format(self) -> FrameFormat:
        return self._format

    @property
    def end_reason(self) -> EndReason | None:
        return self._reason

    def start(self, epoch: str) -> None:
        self.epoch = epoch

    def rewind(self, seq: int) -> None:
        """What this sink got after ``seq`` is not what the log holds there (a node that lost its
        run while Redis was away numbered it): end it with ``runcast.lagged`` carrying the
        position ``seq`` as its id, so that the subscriber resumes from the log's own events."""
        if self._reason is None:
            self.last_seq = min(self.last_seq, seq)
            self._write_last(self._lagged_frame(numbered=True))
            self.end("lagged")

    def end(self, reason: EndReason) -> None:
        if self._reason is None:
            if reason == "shutdown":
                self._write_last(self._shutdown_frame())
            self._reason = reason
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> EndReason:
        """Wait until the sink is finished and say why."""
        if self._reason is None:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        assert self._reason is not None
        return self._reason

    def _lagged_frame(self, *, numbered: bool = False) -> bytes:
        """The ``runcast.lagged`` notice; ``numbered``, it carries the position it names as its
        id (SSE ``id:``, which is what an EventSource resumes from), else none, like notices."""
        where = f"since={Position(self.epoch, self.last_seq)}"
        data = lagged_payload(self.epoch, self.last_seq, where)
        seq = self.last_seq if numbered else None
        return frames.encode_items(self._format, [(seq, LAGGED_EVENT, data)], self.epoch)

    def _shutdown_frame(self) -> bytes:
        data = b'{"epoch":"%s","seq":%d,"retry_ms":%d}' % (
            self.epoch.encode(),
            self.last_seq,
            SHUTDOWN_RETRY_MS,
        )
        return frames.encode_notice(self._format, SHUTDOWN_EVENT, data, retry_ms=SHUTDOWN_RETRY_MS)

    def _write_last(self, data: bytes) -> None:
        """Write a final notice, unless the peer is gone (called once, before the end)."""


class TransportSink(_SinkBase):
    """Writes to an ``asyncio.Transport`` once bound; buffers (bounded) until then.

    The sink can be subscribed before the HTTP response starts: replay and live events wait in a
    pending list and go out in one write at :meth:`bind`. It never closes the transport: whoever
    awaits :meth:`wait` finishes the response (end of chunked body, WebSocket close) and bounds
    that by a timeout.
    """

    __slots__ = (
        "_heartbeat",
        "_pending",
        "_pending_bytes",
        "_policy",
        "_transport",
        "_unanswered",
    )

    def __init__(self, frame_format: FrameFormat, *, buffer_limit: int) -> None:
        super().__init__(frame_format)
        self._transport: asyncio.WriteTransport | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._policy = LagPolicy(buffer_limit)
        self._heartbeat = frames.heartbeat_frame(frame_format)
        self._unanswered = 0
        """Pings sent to the WebSocket peer since it last sent a frame."""

    @property
    def transport(self) -> asyncio.WriteTransport | None:
        return self._transport

    @property
    def buffered(self) -> bool:
        """Whether bytes wait for :meth:`bind` (the replay, notices, live events so far)."""
        return bool(self._pending)

    def bind(self, transport: asyncio.WriteTransport) -> None:
        """Start writing to ``transport``, beginning with everything pending (one write)."""
        if self._transport is not None:
            raise RuntimeError("sink already bound")
        self._transport = transport
        pending = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if transport.is_closing():
            self.end("disconnected")
        elif pending:
            transport.write(pending)

    def send(self, frames: bytes, last_seq: int) -> bool:
        transport = self._transport
        if transport is None:
            return self._send_pending(frames, last_seq)
        if self._reason is not None:
            return False
        if transport.is_closing():
            self.end("disconnected")
            return False
        if not self._policy.admits(transport.get_write_buffer_size(), len(frames)):
            self._cut_off(transport)
            return False
        transport.write(frames)
        self.last_seq = last_seq
        return True

    def heartbeat(self) -> bool:
        if not self.poll():
            return False
        transport = self._transport
        if transport is None:
            return True
        if self._format is FrameFormat.WEBSOCKET:
            if self._unanswered >= MISSED_PONGS:
                transport.abort()
                self.end("disconnected")
                return False
            self._unanswered += 1
        transport.write(self._heartbeat)
        return True

    def answered(self) -> None:
        """The WebSocket peer sent a frame (a pong, or anything else): it is alive."""
        self._unanswered = 0

    def poll(self) -> bool:
        if self._reason is not None:
            return False
        transport = self._transport
        if transport is None:
            return True
        if transport.is_closing():
            self.end("disconnected")
            return False
        if not self._policy.within(transport.get_write_buffer_size()):
            self._cut_off(transport)
            return False
        return True

    def _write_last(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            self._pending.append(data)
        elif not transport.is_closing():
            transport.write(data)

    def _send_pending(self, frames: bytes, last_seq: int) -> bool:
        if self._reason is not None:
            return False
        if not self._policy.admits(self._pending_bytes, len(frames)):
            self._pending.append(self._lagged_frame())
            self.end("lagged")
            return False
        self._pending.append(frames)
        self._pending_bytes += len(frames)
        self.last_seq = last_seq
        return True

    def _cut_off(self, transport: asyncio.WriteTransport) -> None:
        transport.write(self._lagged_frame())
        self.end("lagged")


class BufferSink(_SinkBase):
    """Collects the wire bytes in memory; ``take()`` consumes them. Cut off past ``buffer_limit``."""

    __slots__ = ("_buffer", "_limit", "heartbeats")

    def __init__(
        self, frame_format: FrameFormat = FrameFormat.SSE, *, buffer_limit: int = 1 << 20
    ) -> None:
        super().__init__(frame_format)
        self._buffer = bytearray()
        self._limit = buffer_limit
        self.heartbeats = 0

    def _write_last(self, data: bytes) -> None:
        self._buffer += data

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def send(self, frames: bytes, last_seq: int) -> bool:
        if self._reason is not None:
            return False
        if self._buffer and len(self._buffer) + len(frames) > self._limit:
            self._buffer += self._lagged_frame()
            self.end("lagged")
            return False
        self._buffer += frames
        self.last_seq = last_seq
        return True

    def heartbeat(self) -> bool:
        if self._reason is not None:
            return False
        self.heartbeats += 1
        return True

    def poll(self) -> bool:
        return self._reason is None
