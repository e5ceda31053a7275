"""The HTTP end of one streamed response: the handler waits on it, the run engine writes to it.

The engine writes from its own task, so a run carries on when the client goes away (spec §5: a
run is server-side state; the stream is only a view of it). The response is prepared lazily on the
first write, so a delayed first event also delays the status line (``slow_start``). A write to a
vanished peer marks the sink finished instead of raising into the engine.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["SSE_HEADERS", "StreamSink"]

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class StreamSink:
    """One ``text/event-stream`` response, written by the engine, awaited by the handler."""

    __slots__ = ("_finished", "_request", "response")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def finished(self) -> bool:
        return self._finished.done()

    async def write(self, data: bytes) -> bool:
        """Send ``data``; False (and the sink is finished) when the peer is gone."""
        if self._finished.done():
            return False
        try:
            if not self.response.prepared:
                await self.response.prepare(self._request)
            await self.response.write(data)
        except ConnectionError:
            self._finish()
            return False
        return True

    def close(self) -> None:
        """End the stream normally: the handler returns and aiohttp writes the last chunk."""
        self._finish()

    def abort(self) -> None:
        """Close the TCP connection without ending the HTTP body (the ``drop`` scenario).

        ``transport.close()`` still flushes what was written, so the client gets every event up
        to this point, then EOF in the middle of the chunked body.
        """
        transport = self._request.transport
        if transport is not None:
            transport.close()
        self._finish()

    async def wait(self) -> web.StreamResponse:
        """Wait until the engine closes or aborts the stream (cancelling this ends it too)."""
        await self._finished
        return self.response

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)
