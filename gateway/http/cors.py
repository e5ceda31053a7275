"""CORS for browser clients (Fetch standard, "CORS protocol").

Configured origins (``--cors-origin``, ``*`` for any) get ``Access-Control-Allow-Origin`` echoing
their ``Origin`` (with ``Vary: Origin``) on every response, streams included, and the runcast
response headers exposed to scripts. Preflight requests (``OPTIONS`` with
``Access-Control-Request-Method``) are answered here with 204, before routing. Credentials mode is
not enabled: browsers authenticate with a subscribe token in the URL or an ``Authorization``
header, never cookies.

WebSocket has no CORS: a browser opens one to any host for any page, and lets the page read it.
Where subscribing needs no token (open mode), being able to reach runcast is the only credential,
so a page on another site, open in a browser that can reach runcast (a developer's machine, an
internal network), could follow channels whose name it guesses. :func:`cross_site` tells such an
upgrade apart: it comes with an ``Origin`` that is neither a configured one nor runcast's own
host (``Host``, or ``X-Forwarded-Host`` behind a proxy). Clients other than browsers send no
``Origin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

from .errors import Handler, error_response

__all__ = ["Cors", "cross_site"]

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


def cross_site(request: web.BaseRequest, origins: Sequence[str]) -> bool:
    """Whether ``request`` comes from a page of another site than runcast's own and of the
    configured ``origins`` (module docstring); False without ``Origin``."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in origins or origin in origins:
        return False
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return True
    hosts = {request.headers.get("Host", "").lower()}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",", 1)[0].strip().lower())
    return not netloc or netloc not in hosts
