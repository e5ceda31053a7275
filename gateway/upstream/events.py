"""Reading one streamed response as SSE events, whatever the protocol (:class:`EventStream`).

The I/O shell for the Responses and Chat Completions relays: read a chunk, feed
``parsers.sse.SSEDecoder``, hand out every event one read completed. Typing the events and
judging how the stream ended (a terminal event, ``[DONE]``, or a cut) are the protocol's: a
clean end of body is ``[]`` from :meth:`EventStream.read_batch`; a connection cut mid-body
(:class:`~gateway.errors.UpstreamConnectionError`), a timeout, an oversized event or a body
past ``max_bytes`` (:class:`~gateway.errors.StreamTooLarge`) is raised once the events decoded
before it have been handed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from gateway.errors import StreamTooLarge, UpstreamConnectionError
from parsers.errors import EventTooLarge
from parsers.sse import ServerSentEvent, SSEDecoder

from .transport import UpstreamResponse

__all__ = ["EventStream"]


class EventStream:
    """Async context manager over one event-stream response; entering sends the request."""

    __slots__ = (
        "_decoder",
        "_deferred",
        "_finished",
        "_max_bytes",
        "_opener",
        "_response",
        "bytes_read",
    )

    def __init__(
        self,
        opener: Callable[[], Awaitable[UpstreamResponse]],
        *,
        max_event_bytes: int | None = None,
        max_bytes: int = 0,
        counted: int = 0,
    ) -> None:
        """``max_bytes``: the most body bytes read before :class:`StreamTooLarge` (0: no limit),
        ``counted`` of them already read (by the stream this one resumes)."""
        self._opener = opener
        self._max_bytes = max_bytes
        self.bytes_read = counted
        self._decoder = (
            SSEDecoder() if max_event_bytes is None else SSEDecoder(max_event_bytes=max_event_bytes)
        )
        self._response: UpstreamResponse | None = None
        self._deferred: BaseException | None = None
        self._finished = False

    async def __aenter__(self) -> Self:
        if self._response is not None or self._finished:
            raise RuntimeError("an EventStream can be entered only once")
        self._response = await self._opener()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finished = True
        if self._response is not None:
            self._response.release()

    @property
    def response(self) -> UpstreamResponse:
        """The response head (``status``, ``headers`` such as ``x-request-id``)."""
        if self._response is None:
            raise RuntimeError("EventStream not entered")
        return self._response

    @property
    def partial_event(self) -> bool:
        """True when the body ended inside an event (the decoder held an unterminated one)."""
        return self._decoder.truncated

    async def read_batch(self) -> list[ServerSentEvent]:
        """The events of the next upstream read; ``[]`` once the body has ended cleanly."""
        response = self._response
        if response is None:
            raise RuntimeError("read an EventStream inside `async with`")
        while not self._finished:
            cut: UpstreamConnectionError | None = None
            try:
                chunk = await response.read_chunk()
            except UpstreamConnectionError as exc:
                chunk, cut = b"", exc
            self.bytes_read += len(chunk)
            if self._max_bytes and self.bytes_read > self._max_bytes:
                # The events of the read that crossed the limit are handed out, then it is over.
                self._finished = True
                self._deferred = StreamTooLarge(self._max_bytes)
            try:
                events = self._decoder.feed(chunk) if chunk else self._decoder.close()
            except EventTooLarge as exc:
                events, cut = [e for e in exc.events if isinstance(e, ServerSentEvent)], None
                # Kept without its traceback: that holds the decoder's frames and the 16 MiB
                # line that overflowed, for as long as the error is held.
                self._deferred = exc.with_traceback(None)
                self._finished = True
            if not chunk:
                self._finished = True
                self._deferred = self._deferred or cut
            elif self._finished:
                response.release()
            if events:
                return list(events)
            if not self._finished:
                # A read that completed no event (comments, part of a long line): the next may
                # be buffered already (a decompressed body comes in large pieces that read at
                # once), and reading them back to back would hold the loop for the whole body.
                await asyncio.sleep(0)
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            try:
                raise deferred
            finally:
                del deferred  # else this frame, held by the error's traceback, holds the error
        return []
