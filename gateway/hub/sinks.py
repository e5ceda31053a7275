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

A reader that is well behind (more than :data:`HOLD_ABOVE` bytes waiting in the transport) gets
what follows held by the sink and written in one piece, with the first event after the transport
drained below that or at the latest :data:`HOLD_SECONDS` later, instead of one write per event: every write queued in a transport costs the event loop some 370 bytes of its own
(measured with uvloop: one 250-byte delta per loop turn held 3.2 times its size), so 1 MiB of
token deltas queued one by one held 3.8 MiB per stalled subscriber. Held bytes count toward the
limit like queued ones, and they are written before any notice, heartbeat or end.

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

__all__ = ["HOLD_ABOVE", "HOLD_SECONDS", "MISSED_PONGS", "BufferSink", "TransportSink"]

HOLD_ABOVE = 64 * 1024
"""Bytes waiting in a subscriber's transport past which new events are held and written
together (asyncio's default high-water mark: a reader this far behind gains nothing from an
event written at once)."""

HOLD_SECONDS = 0.05
"""How long held events wait before they go out as one write."""

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
        "_flush_at",
        "_heartbeat",
        "_held",
        "_held_bytes",
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
        # Once bound: events held while the reader is well behind (module docstring), and the
        # timer that writes them.
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_at: asyncio.TimerHandle | None = None

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
        queued = transport.get_write_buffer_size()
        if not self._policy.admits(queued + self._held_bytes, len(frames)):
            self._cut_off(transport)
            return False
        if queued > HOLD_ABOVE:
            self._held.append(frames)
            self._held_bytes += len(frames)
            if self._flush_at is None:
                loop = asyncio.get_running_loop()
                self._flush_at = loop.call_later(HOLD_SECONDS, self._flush)
        elif self._held:
            # The peer caught up: what was held goes out with this event, in one write.
            self._held.append(frames)
            self._flush()
        else:
            transport.write(frames)
        self.last_seq = last_seq
        return True

    def end(self, reason: EndReason) -> None:
        # What was held goes out first: whoever awaits wait() finishes the response next.
        self._flush()
        super().end(reason)

    def _flush(self) -> None:
        """Write what is held, in one piece (unless the peer is gone)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if not self._held:
            return
        held = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(held)

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
        self._flush()
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
        if not self._policy.within(transport.get_write_buffer_size() + self._held_bytes):
            self._cut_off(transport)
            return False
        return True

    def _write_last(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            self._pending.append(data)
        elif not transport.is_closing():
            self._flush()
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
        self._flush()  # the notice names last_seq: what was held before it is part of the stream
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
