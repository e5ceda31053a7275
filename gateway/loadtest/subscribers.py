"""Subscriber clients: read one thread channel over SSE or WebSocket up to the run's end.

A subscriber owns its connection for its whole life (connect, ``ready``, read, close) inside one
task run by the driver's per-run task group. It stops at the ``done`` that closes the run's last
segment: a ``done`` right after ``thread.run.requires_action`` only ends a segment (spec §2.3,
the continuation after the tool outputs follows on the same channel). Failures are recorded as an
error kind, never raised, so one broken subscriber does not fail its run.
"""

from __future__ import annotations

import asyncio
import time
from array import array

import aiohttp
import msgspec

from parsers.errors import RemoteProtocolError
from parsers.sse import SSEDecoder

__all__ = ["RUNCAST_PREFIX", "RunStatusView", "Subscriber", "run_status"]

RUNCAST_PREFIX = "runcast."
"""Events runcast adds on channels only; they have no counterpart in the creator's stream."""

MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024


class RunStatusView(msgspec.Struct):
    status: str = ""


class _WsFrame(msgspec.Struct):
    event: str
    data: msgspec.Raw = msgspec.Raw(b"null")


_status_decoder = msgspec.json.Decoder(RunStatusView)
_frame_decoder = msgspec.json.Decoder(_WsFrame)


def run_status(name: str, data: bytes) -> str | None:
    """The run status carried by a ``thread.run.*`` event (not a step event), else None."""
    if not name.startswith("thread.run.") or name.startswith("thread.run.step."):
        return None
    try:
        return _status_decoder.decode(data).status or None
    except msgspec.DecodeError:
        return None


class Subscriber:
    """One channel reader; results in ``times`` (receive time per upstream event), counters."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        websocket: bool,
        connect_timeout: float,
        idle_timeout: float,
    ) -> None:
        self._session = session
        self._url = url
        self._websocket = websocket
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=idle_timeout
        )
        self._last_status: str | None = None
        self.ready = asyncio.Event()
        self.times = array("d")
        self.events = 0
        self.bytes = 0
        self.finished = False
        self.error: str | None = None

    async def run(self) -> None:
        """Connect, set ``ready``, read to the run's end; sets ``finished`` or ``error``."""
        try:
            if self._websocket:
                await self._run_ws()
            else:
                await self._run_sse()
            if not self.finished and self.error is None:
                self.error = "subscriber_truncated"
        except TimeoutError:
            self.error = "subscriber_timeout"
        except RemoteProtocolError:
            self.error = "subscriber_protocol"
        except aiohttp.WSServerHandshakeError as exc:
            self.error = f"subscriber_http_{exc.status}"
        except aiohttp.ClientError:
            self.error = "subscriber_connection"
        finally:
            self.ready.set()

    def _on_event(self, name: str, data: bytes) -> bool:
        """Record one event; True at the run's final ``done``."""
        self.events += 1
        if not name.startswith(RUNCAST_PREFIX):
            self.times.append(time.perf_counter())
        status = run_status(name, data)
        if status is not None:
            self._last_status = status
        if name == "done" and self._last_status != "requires_action":
            self.finished = True
        return self.finished

    async def _run_sse(self) -> None:
        headers = {"Accept": "text/event-stream"}
        async with self._session.get(self._url, headers=headers, timeout=self._timeout) as resp:
            if resp.status != 200:
                self.error = f"subscriber_http_{resp.status}"
                return
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
                except msgspec.DecodeError:
                    self.error = "subscriber_protocol"
                    return
                if self._on_event(frame.event, bytes(frame.data)):
                    return
