"""CORS for browser clients (Fetch standard, "CORS protocol").

Configured origins (``--cors-origin``, ``*`` for any) get ``Access-Control-Allow-Origin`` echoing
their ``Origin`` (with ``Vary: Origin``) on every response, streams included, and the runcast
response headers exposed to scripts. Preflight requests (``OPTIONS`` with
``Access-Control-Request-Method``) are answered here with 204, before routing. Credentials mode is
not enabled: browsers authenticate with a subscribe token in the URL or an ``Authorization``
header, never cookies.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from .errors import Handler, error_response

__all__ = ["Cors"]

_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
_DEFAULT_ALLOW_HEADERS = (
    "Authorization, Content-Type, Last-Event-ID, OpenAI-Beta, OpenAI-Organization, OpenAI-Project"
)
_EXPOSE_HEADERS = ", ".join(
    (
        # Every header runcast adds for a creator (ids and subscribe tokens of its channels).
        "runcast-run-id",
        "runcast-thread-id",
        "runcast-response-id",
        "runcast-completion-id",
        "runcast-conversation-id",
        "runcast-channel",
        "runcast-subscribe-token",
        "runcast-thread-token",
        "runcast-conversation-token",
        "runcast-channel-token",
        "x-request-id",
        "retry-after",
        "openai-poll-after-ms",
    )
)
_MAX_AGE = "600"


class Cors:
    """Installs the preflight middleware and the response hook on an app."""

    __slots__ = ("_any", "_origins")

    def __init__(self, origins: Sequence[str]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(origins)

    def install(self, app: web.Application) -> None:
        if not self._origins:
            return
        app.middlewares.append(self._preflight)
        app.on_response_prepare.append(self._on_prepare)

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and (self._any or origin in self._origins)

    @web.middleware
    async def _preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return await handler(request)
        if not self._allowed(origin):
            return error_response(403, f"CORS origin not allowed: {origin}", code="cors_origin")
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": _ALLOW_METHODS,
                "Access-Control-Allow-Headers": requested or _DEFAULT_ALLOW_HEADERS,
                "Access-Control-Max-Age": _MAX_AGE,
            },
        )

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        # Every answer depends on the Origin (allowed ones get their own in the headers): a
        # shared cache must not give one answered without CORS headers to an allowed origin.
        response.headers.add("Vary", "Origin")
        origin = request.headers.get("Origin")
        if not self._allowed(origin):
            return
        assert origin is not None
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method != "OPTIONS":
            response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
