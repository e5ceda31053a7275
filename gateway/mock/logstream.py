"""An :class:`~gateway.mock.eventlog.EventLog` read out as one ``text/event-stream`` response.

The status line goes out with the first frame (so a ``slow_start`` delays it, as in the Assistants
simulator); a cut closes the TCP connection mid-body after flushing what was written; a client
that leaves just stops being a reader, and the generation goes on.
"""

from __future__ import annotations

from aiohttp import web

from gateway.mock.eventlog import EventLog
from gateway.mock.sink import SSE_HEADERS

__all__ = ["stream_log"]


async def stream_log(
    request: web.Request, log: EventLog, cursor: int, *, creator: bool
) -> web.StreamResponse:
    """Copy ``log`` from ``cursor`` to an SSE response until it ends (or is cut)."""
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    reader = log.attach(cursor, creator=creator)
    try:
        while True:
            data, state = log.take(reader)
            if data:
                if not response.prepared:
                    await response.prepare(request)
                await response.write(data)
            if state == "cut":
                if request.transport is not None:
                    request.transport.close()  # flushes what was written, then EOF mid-body
                return response
            if state == "end":
                break
            if not data:
                await log.wait()
    except ConnectionError:
        return response  # the client left; the response goes on without this reader
    finally:
        log.detach(reader)
    if not response.prepared:
        await response.prepare(request)
    return response
