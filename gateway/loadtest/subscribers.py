"""Subscriber clients: read one thread channel over SSE or WebSocket up to the run's end.

A subscriber owns its connection for its whole life (connect, ``ready``, read, close) inside one
task run by the driver's per-run task group. Its protocol's :class:`~.protocols.Tracker` reads
the events, so it stops where the run's last segment ends (an Assistants ``done`` right after
``thread.run.requires_action`` only ends a segment, spec §2.3; a Responses or Chat channel carries
the first segment only, so there the end of that segment is the end). For each upstream event it keeps
the receive time and a digest (up to ``MAX_KEPT_EVENTS``, then counts them in ``unkept``), so the
driver can match its copy against the creator's (lag, gaps, duplicates, order). Failures are recorded as an error kind, never raised, so one broken subscriber does
not fail its run.
"""

from __future__ import annotations

import asyncio
import time
from array import array

import aiohttp
import msgspec

from parsers.errors import DECODE_ERRORS, RemoteProtocolError
from parsers.sse import SSEDecoder

from .errors import ERROR_BODY_BYTES, refusal_text
from .protocols import Tracker, digest
from .stats import MAX_KEPT_EVENTS

__all__ = ["Subscriber", "no_websocket_redirects"]

MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024
REQUIRES_ACTION = "thread.run.requires_action"
TOOL_CALL_STARTED = "runcast.tool_call.started"


class _WsFrame(msgspec.Struct):
    event: str
    data: msgspec.Raw = msgspec.Raw(b"null")


_frame_decoder = msgspec.json.Decoder(_WsFrame)
_string_decoder = msgspec.json.Decoder(str)


def _sse_data(raw: bytes) -> bytes:
    """The SSE data of a WebSocket frame: JSON spliced as is, other data as a JSON string
    (``gateway/hub/frames.py``), so both transports' copies compare byte for byte."""
    if raw[:1] != b'"':
        return raw
    try:
        return _string_decoder.decode(raw).encode()
    except DECODE_ERRORS:
        return raw


async def no_websocket_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A session middleware: ``ws_connect`` follows redirects and takes no ``allow_redirects``,
    so a 3xx to a WebSocket handshake ends it here, as any status but 101 does."""
    response = await handler(request)
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if upgrade and 300 <= response.status < 400:
        response.release()
        raise aiohttp.WSServerHandshakeError(
            response.request_info,
            response.history,
            message="redirect not followed",
            status=response.status,
            headers=response.headers,
        )
    return response


class Subscriber:
    """One channel reader; ``times`` and ``digests`` per upstream event, counters, outcome."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        tracker: Tracker,
        websocket: bool,
        first_segment: bool,
        connect_timeout: float,
        idle_timeout: float,
    ) -> None:
        self._session = session
        self._url = url
        self._websocket = websocket
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=idle_timeout
        )
        self._tracker = tracker
        self._first_segment = first_segment
        self.ready = asyncio.Event()
        self.joined = 0.0
        """When the channel answered (``perf_counter``): events the creator had by then came
        to this subscriber from the channel's replay."""
        self.times = array("d")
        self.digests = array("q")
        self.unkept = 0
        self.events = 0
        self.bytes = 0
        self.finished = False
        self.error: str | None = None
        self._action: int | None = None
        """Index in ``digests`` of a requires_action nothing upstream has followed yet, or of a
        chat round's first tool-call chunk (while ``_calling``)."""
        self._calling = False
        """In a chat round that turned to tool calls, until the gateway says it answers them."""
        self.detail: str | None = None
        """What the target said when it refused the subscription (``errors.py``)."""

    async def run(self) -> None:
        """Connect, set ``ready``, read to the run's end; sets ``finished`` or ``error``."""
        try:
            if self._websocket:
                await self._run_ws()
            else:
                await self._run_sse()
            if not self.finished and self.error is None:
                self.error = "subscriber_truncated"
                self.detail = "the channel ended before the run's last event"
        except TimeoutError:
            self.error = "subscriber_timeout"
            self.detail = f"no event for {self._timeout.sock_read:g} s (--idle-timeout)"
        except RemoteProtocolError as exc:
            self.error = "subscriber_protocol"
            self.detail = str(exc)[:200]
        except aiohttp.WSServerHandshakeError as exc:
            self.error = f"subscriber_http_{exc.status}"
            self.detail = refusal_text(exc.status, exc.headers or {}, b"")
        except aiohttp.ClientError:
            self.error = "subscriber_connection"
        except Exception as exc:
            # Last resort, as the module promises: never raised, whatever the bytes (a
            # CancelledError, no Exception, still ends the task).
            self.error = "subscriber_unexpected_error"
            self.detail = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self.ready.set()

    def _on_event(self, name: str, data: bytes) -> bool:
        """Record one event; True at the run's final end (stop reading)."""
        self.events += 1
        if name == TOOL_CALL_STARTED and self._action is not None:
            # The gateway answers the action itself: its creator never gets the run's
            # requires_action (one continuous run), nor a chat round from its first tool call
            # on, so this copy does not count them either.
            del self.times[self._action :], self.digests[self._action :]
            self._action = None
            self._calling = False
        seen = self._tracker.feed(name, data)
        if seen.upstream:
            if name == REQUIRES_ACTION:
                self._action = len(self.digests)
            elif seen.calls:
                if not self._calling:
                    self._action, self._calling = len(self.digests), True
            elif not self._calling:
                self._action = None
            if len(self.digests) < MAX_KEPT_EVENTS:
                self.times.append(time.perf_counter())
                self.digests.append(digest(name, data, seen))
            else:
                self.unkept += 1
        tracker = self._tracker
        if tracker.failure == "protocol":
            # Bytes the protocol does not allow: this copy is broken, not merely cut short.
            self.error, self.detail = "subscriber_protocol", tracker.detail
            return True
        # A channel that carries one segment is whole once that segment ended, even one that
        # asked for a tool call. It is still read to its end: when the gateway answers the call
        # itself, the follow-up goes on in the same channel (and in the creator's stream).
        segment_done = self._first_segment and seen.end and tracker.failure is None
        self.finished = tracker.finished or segment_done
        return tracker.finished

    async def _run_sse(self) -> None:
        headers = {"Accept": "text/event-stream"}
        async with self._session.get(
            self._url, headers=headers, timeout=self._timeout, allow_redirects=False
        ) as resp:
            if resp.status != 200:
                self.error = f"subscriber_http_{resp.status}"
                body = await resp.content.read(ERROR_BODY_BYTES)
                self.detail = refusal_text(resp.status, resp.headers, body)
                return
            self.joined = time.perf_counter()
            self.ready.set()
            decoder = SSEDecoder()
            async for chunk in resp.content.iter_any():
                self.bytes += len(chunk)
                for event in decoder.feed(chunk):
                    if self._on_event(event.event, event.data_bytes):
                        return

    async def _run_ws(self) -> None:
        async with self._session.ws_connect(
            self._url,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            max_msg_size=MAX_WS_MESSAGE_BYTES,
        ) as ws:
            self.joined = time.perf_counter()
            self.ready.set()
            while True:
                # The idle limit applies per message, as `sock_read` does for SSE.
                msg = await ws.receive(timeout=self._timeout.sock_read)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                text: str = msg.data
                self.bytes += len(text)
                try:
                    frame = _frame_decoder.decode(text)
                except DECODE_ERRORS as exc:
                    self.error = "subscriber_protocol"
                    self.detail = f"a WebSocket frame that does not decode ({exc})"[:200]
                    return
                if self._on_event(frame.event, _sse_data(bytes(frame.data))):
                    return
