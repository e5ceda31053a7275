"""Request middleware putting the run, thread and response ids a request names into the log
context (:mod:`gateway.logs`), so every line logged while handling it carries them.

Ids come from the route (``/streams/runs/{run_id}``) or, for the ``/v1`` proxy, from the upstream
path (``threads/{id}``, ``runs/{id}``, ``responses/{id}``). A relay the request starts inherits
them and adds the run id once the upstream names it. The access log line, written after the
handler, carries them too (:func:`request_ids`, read by ``access.AccessLogger``). The caller's
W3C trace context (``traceparent``) is made current the same way (``gateway.tracing``).
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import logs, tracing

__all__ = ["log_context_middleware", "request_ids"]

_IDS = web.RequestKey("runcast.log_ids", dict[str, str])
# A whole path segment only: "thread_1.evil" or "thread_1%00x" names no thread (a client must
# not get its lines filed under someone else's id), nor does the "runs" of /threads/runs.
_PATH_IDS = re.compile(r"(?:^|/)(threads|runs|responses)/([A-Za-z0-9_\-]{1,128})(?=/|$)")
_NAMES = {"threads": "thread_id", "runs": "run_id", "responses": "response_id"}
_NOT_IDS = frozenset({"runs", "messages", "steps", "cancel", "input_items"})


def request_ids(request: web.BaseRequest) -> dict[str, str]:
    """The ids the middleware found in ``request`` (none when it did not run: a bad request)."""
    return request.get(_IDS) or {}


@web.middleware
async def log_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    ids = {name: match[name] for name in ("run_id", "thread_id", "response_id") if name in match}
    tail = match.get("tail")
    if tail is not None:
        for kind, value in _PATH_IDS.findall(tail):
            if value not in _NOT_IDS:
                ids.setdefault(_NAMES[kind], value)
    with tracing.extracted(request.headers):
        if not ids:
            return await handler(request)
        request[_IDS] = ids
        with logs.bound(**ids):
            return await handler(request)
