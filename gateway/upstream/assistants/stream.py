"""Reading one streamed run response: chunks -> SSE events -> typed events (:class:`RunStream`).

The I/O shell around the sans-I/O parsers: read a chunk, feed ``parsers.sse.SSEDecoder``, decode
each event with ``parsers.assistants.decode_event``, and hand out :class:`StreamItem` values that
keep the raw SSE pieces next to the typed event, so relaying needs no re-encoding: one at a time
(``async for``) or all those one read brought (:meth:`RunStream.read_batch`).

How a stream ends (spec §2.1, §2.4, Appendix C):

* ``data: [DONE]`` after the run's last word (as for an EOF, below) -> the
  :class:`~parsers.assistants.DoneEvent` item is yielded, then iteration stops and the response is
  released; bytes after it are ignored (as the openai SDK does, §6.2).
* ``data: [DONE]`` before it (no terminal or ``requires_action`` run event, no ``event: error``):
  the HTTP stream ended, the run did not (§2.1: a run stream ends at one of those). It is a
  truncation like an EOF there: the ``done`` item is not yielded, the response is closed and
  :class:`~gateway.errors.StreamTruncated` (``early_done`` set) is raised after the events before
  it. Handed out, it would tell a relay the run's stream had ended cleanly, and no recovery
  would learn how the run did end.
* EOF (or a connection cut mid-body) without ``[DONE]``:

  - after a terminal run event (completed, incomplete, failed, cancelled, expired) or
    ``thread.run.requires_action``: a normal end. The run said its last word on this response;
  - after an ``event: error``: a normal end too. The server may close right after it (§2.4), and
    the error was already yielded as a typed :class:`~parsers.assistants.ErrorEvent`;
  - otherwise :class:`~gateway.errors.StreamTruncated`, carrying the last run status, run and
    thread IDs, and whether an unterminated event was pending. Events decoded before the cut are
    yielded first.

* A body past ``max_bytes``: the events of the read that crossed it are yielded, the response
  is closed, then :class:`~gateway.errors.StreamTooLarge` is raised (unless the run had said its
  last word, as at an EOF).
* ``event: error`` is yielded, never raised: the gateway relays it like any other event.
* An event whose JSON does not fit its schema is yielded as an
  :class:`~parsers.assistants.UnknownEvent` with the raw bytes and ``decode_error`` set, so one bad
  payload is reported without ending the stream. Events with empty ``data`` are skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import msgspec

from gateway.errors import StreamTooLarge, StreamTruncated, UpstreamConnectionError
from parsers.assistants import AssistantStreamEvent, Run, UnknownEvent, decode_event
from parsers.assistants.signals import SETTLED_STATUSES, signal
from parsers.errors import EventDecodeError, EventTooLarge
from parsers.signals import Empty, GroupSeen, RunSeen, Signal, StreamEnd, StreamError
from parsers.sse import ServerSentEvent, SSEDecoder

from ..transport import UpstreamResponse

__all__ = ["RunStream", "StreamItem"]


class StreamItem(msgspec.Struct, frozen=True):
    """One event of an upstream run stream.

    ``event`` is the typed event; ``sse`` is the decoded SSE event it came from, whose ``event``
    name and ``data_bytes`` are the wire payload (byte-exact for valid UTF-8), ready to be framed
    once with ``parsers.sse.encode_sse`` and shared by every subscriber. ``decode_error`` is set
    when the payload did not fit its schema (``event`` is then an ``UnknownEvent``). ``signal``
    is what the event means to the gateway (``parsers.signals``), worked out once here.
    """

    event: AssistantStreamEvent
    sse: ServerSentEvent
    decode_error: EventDecodeError | None = None
    signal: Signal[Run] | None = None

    @property
    def name(self) -> str:
        """The SSE event name (``thread.message.delta``, ``error``, ``done``...)."""
        return self.sse.event

    @property
    def data_bytes(self) -> bytes:
        """The SSE ``data`` as bytes."""
        return self.sse.data_bytes


class RunStream:
    """Async context manager and async iterator over one streamed run response.

    ::

        async with client.stream_run(thread_id, body) as stream:
            async for item in stream:
                ...

    Entering sends the request (with the client's retries) and raises
    :class:`~gateway.errors.UpstreamHTTPError` for a non-2xx answer; leaving releases the
    response whether or not it was read to the end. :meth:`aclose` does the same for holders that
    cannot use ``async with``. Iteration raises ``UpstreamTimeout`` (``first_byte``/``idle``),
    ``StreamTruncated``, or ``parsers.errors.EventTooLarge``; after any of them it is over.
    ``last_status``, ``run_id``, ``thread_id`` and ``last_error`` describe what was seen so far.
    """

    __slots__ = (
        "_decoder",
        "_deferred",
        "_done",
        "_finished",
        "_last_error",
        "_last_status",
        "_max_bytes",
        "_opener",
        "_pending",
        "_response",
        "_run_id",
        "_thread_id",
        "bytes_read",
    )

    def __init__(
        self,
        opener: Callable[[], Awaitable[UpstreamResponse]],
        *,
        max_event_bytes: int | None = None,
        max_bytes: int = 0,
        run_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        """``max_bytes``: the most body bytes read before :class:`StreamTooLarge` (0: no limit)."""
        self._opener = opener
        self._max_bytes = max_bytes
        self.bytes_read = 0
        self._decoder = (
            SSEDecoder() if max_event_bytes is None else SSEDecoder(max_event_bytes=max_event_bytes)
        )
        self._response: UpstreamResponse | None = None
        self._pending: deque[StreamItem] = deque()
        self._deferred: BaseException | None = None
        self._finished = False
        self._done = False
        self._last_status: str | None = None
        self._last_error: AssistantStreamEvent | None = None
        self._run_id = run_id
        self._thread_id = thread_id

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._response is not None or self._finished:
            raise RuntimeError("a RunStream can be entered only once")
        self._response = await self._opener()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            self._stop()
            if self._response is not None:
                self._response.release()

    async def aclose(self) -> None:
        """Stop iterating and release the response: after ``[DONE]`` the rest of the body is
        read first (bounded) so the connection can be reused; otherwise it is closed if unread."""
        self._stop()
        if self._response is not None:
            if self._done:
                await self._response.finish()
            else:
                self._response.release()

    def _stop(self) -> None:
        self._finished = True
        self._pending.clear()
        self._deferred = None

    # -- what was seen -----------------------------------------------------------------------

    @property
    def response(self) -> UpstreamResponse:
        """The response head (``status``, ``headers`` such as ``x-request-id``)."""
        if self._response is None:
            raise RuntimeError("RunStream not entered")
        return self._response

    @property
    def last_status(self) -> str | None:
        """Status of the last run event decoded, None before any."""
        return self._last_status

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def thread_id(self) -> str | None:
        return self._thread_id

    @property
    def done(self) -> bool:
        """True once ``[DONE]`` ended the stream (after the run's last word)."""
        return self._done

    @property
    def last_error(self) -> AssistantStreamEvent | None:
        """The last ``event: error`` seen, if any."""
        return self._last_error

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamItem:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._finished:
                deferred, self._deferred = self._deferred, None
                if deferred is not None:
                    raise deferred
                raise StopAsyncIteration
            await self._fill()

    async def read_batch(self) -> list[StreamItem]:
        """Every item decoded from the next upstream read (those left over from the last one
        first), so that a relay can publish them as one batch; ``[]`` once the stream is over.
        Raises what iteration raises."""
        while not self._pending:
            if self._finished:
                deferred, self._deferred = self._deferred, None
                if deferred is not None:
                    raise deferred
                return []
            await self._fill()
        batch = list(self._pending)
        self._pending.clear()
        return batch

    async def _fill(self) -> None:
        response = self._response
        if response is None:
            raise RuntimeError("iterate a RunStream inside `async with`")
        cut: UpstreamConnectionError | None = None
        try:
            try:
                chunk = await response.read_chunk()
            except UpstreamConnectionError as exc:
                # A connection cut mid-body is an EOF for the purpose of judging truncation.
                chunk, cut = b"", exc
            self.bytes_read += len(chunk)
            events = self._decoder.feed(chunk) if chunk else self._decoder.close()
        except EventTooLarge as exc:
            # Deliver what the decoder had completed before the oversize line, then fail.
            self._finished = True
            response.release()
            for sse in exc.events:
                if isinstance(sse, ServerSentEvent):
                    self._take(sse)
            self._deferred = exc
            return
        except BaseException:
            self._finished = True
            response.release()
            raise
        for sse in events:
            self._take(sse)
            if self._done:
                # Released on leaving: what is left of the body is read then (finish()).
                self._finished = True
                return
            if self._deferred is not None:
                # A `done` before the run's last word (_take): nothing after it is read.
                self._finished = True
                response.release()
                return
        if self._max_bytes and self.bytes_read > self._max_bytes:
            self._finished = True
            response.release()
            if self._judge_eof(None) is not None:  # not when the run already said its last word
                self._deferred = StreamTooLarge(self._max_bytes)
            return
        if not chunk:
            self._finished = True
            response.release()
            self._deferred = self._judge_eof(cut)
        elif not self._pending:
            # A read that completed nothing to hand out: the next may be buffered already (a
            # decompressed body comes in large pieces), and reading them back to back would hold
            # the loop for the whole body.
            await asyncio.sleep(0)

    def _take(self, sse: ServerSentEvent) -> None:
        decode_error: EventDecodeError | None = None
        try:
            event = decode_event(sse)
        except EventDecodeError as exc:
            event = UnknownEvent(event=sse.event, data=sse.data_bytes)
            decode_error = exc
        sig = signal(event)
        if isinstance(sig, RunSeen):
            # What was seen of this stream's run (its first): an event naming another run is
            # handed out for the reader to refuse, and says nothing of how this one ended.
            if self._run_id is None:
                self._run_id = sig.run_id
            if sig.run_id == self._run_id:
                self._last_status = sig.status
                self._thread_id = self._thread_id or sig.group_id
        elif isinstance(sig, GroupSeen):
            self._thread_id = self._thread_id or sig.group_id
        elif isinstance(sig, StreamError):
            self._last_error = event
        elif isinstance(sig, StreamEnd):
            early = self._judge_eof(None, early_done=True)
            if early is not None:
                self._deferred = early  # a truncation, not an end (module docstring)
                return
            self._done = True
        elif isinstance(sig, Empty) and decode_error is None:
            return  # empty-data event: nothing to relay (spec Appendix C)
        self._pending.append(StreamItem(event, sse, decode_error, sig))

    def _judge_eof(
        self, cut: UpstreamConnectionError | None, *, early_done: bool = False
    ) -> StreamTruncated | None:
        if self._last_error is not None or self._last_status in SETTLED_STATUSES:
            return None
        exc = StreamTruncated(
            last_status=self._last_status,
            run_id=self._run_id,
            thread_id=self._thread_id,
            partial_event=self._decoder.truncated,
            early_done=early_done,
        )
        exc.__cause__ = cut
        return exc
