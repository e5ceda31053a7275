"""The listening socket: its accept backlog, the open-connection cap, the request-head deadline,
refusals.

The backlog (``--backlog``) is the kernel's queue of connections completed but not yet accepted.
When it is full, Linux drops further SYNs and each client waits for its retransmission (1 s, then
2 s, 4 s...), which turns a connection storm (a thousand browsers reconnecting after a deploy)
into seconds of delay. The default is ``net.core.somaxconn``, the ceiling the kernel applies to
any ``listen()`` anyway (4096 since Linux 5.4).

aiohttp's own knob bounds a request head: each connection's ``RequestHandler`` gets
``keepalive_timeout=header_timeout``, which (aiohttp >= 3.14.4) is armed when the connection
opens and again after each response, and closes the connection if the next request's head has
not fully arrived by then. It never fires while a handler runs, so SSE and WebSocket streams get
no total timeout. The body has its own deadline (``bodies.py``).

aiohttp has no cap on open connections, so :class:`Listener` is the protocol factory of the
listening socket and counts the connections its handlers serve. Past ``max_connections`` a new
connection gets a pre-built ``503`` in the OpenAI error shape (``too_many_connections``,
``Retry-After``) before anything is read, then a FIN; what the client sends meanwhile is read and
discarded so that closing does not turn into a reset that would destroy the answer, and the
socket is aborted after ``LINGER`` at the latest. At most ``MAX_LINGERING_REFUSALS`` of
those are open at once; past that a connection is closed at once without an answer. Either way
no file descriptor is held for long, and every ``RESERVED_FDS`` stays free for upstream
connections, the embedded simulator and files.

The handlers also keep malformed requests quiet: aiohttp logs each with an ERROR traceback; here
the client gets a JSON 400 and the log one warning line (a debug line for non-HTTP traffic such
as TLS on the plain port). The 400 and the log line name the kind of fault but never quote the
request, as aiohttp's messages do (a subscribe token in the query, a key in ``Authorization``).
A request in any version but HTTP/1.1 and HTTP/1.0 is malformed too: llhttp parses ``HTTP/0.9``
and ``HTTP/2.0`` request lines, which no handler here can answer (an SSE stream is HTTP/1.1
chunked or HTTP/1.0 ended by the connection's close): :func:`version_middleware`, the app's
first, refuses them. After a malformed request nothing more is read from its connection.

A WebSocket connection gets at most the bytes its frame budget allows (``WS_FRAME_BURST`` and
``WS_FRAME_RATE`` frames of ``WS_MAX_INCOMING`` bytes, a token bucket): that budget counts whole
messages, and aiohttp hands none over until a fragmented one ends, so a peer sending endless
empty continuation frames (8 million a second from one connection) would hold the event loop
uncounted. Past the byte budget the connection is cut.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import _ErrInfo  # what a malformed request is queued as

from gateway.errors import ConfigError, ListenError
from gateway.hub.transports import WS_FRAME_BURST, WS_FRAME_RATE, WS_MAX_INCOMING

from .errors import Handler, error_body, error_response

__all__ = [
    "LINGER",
    "MAX_LINGERING_REFUSALS",
    "RESERVED_FDS",
    "ListenSite",
    "Listener",
    "connection_cap",
    "listen_backlog",
    "listen_failure",
    "raise_open_file_limit",
    "version_middleware",
]

log = logging.getLogger("runcast.http")

RESERVED_FDS = 384
"""File descriptors the default connection cap leaves free: the upstream pool (100 by default),
the embedded simulator's side of those connections (100), ``MAX_LINGERING_REFUSALS``, webhook
connections, listening sockets and files."""
LINGER = 2.0
"""Longest a connection answered before its request was read whole (a refusal, a 408, a 413)
stays open while the answer reaches the client."""
MAX_LINGERING_REFUSALS = 64
"""Refused connections lingering at once; further ones are closed without an answer."""
_WARN_EVERY = 60.0
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"
DEFAULT_BACKLOG = 4096
"""The backlog where ``somaxconn`` cannot be read: Linux's own default since 5.4."""

_REFUSAL_BODY = error_body(
    503,
    "runcast has too many open connections (--max-connections); retry later",
    code="too_many_connections",
)
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def listen_failure(host: str, port: int, exc: OSError, *, what: str = "") -> ListenError:
    """The one line that says why ``host:port`` (for ``what``) cannot be listened on."""
    if exc.errno is not None and exc.errno > 0:
        reason = os.strerror(exc.errno)
    else:  # getaddrinfo's errors are negative and carry their own text
        reason = exc.strerror or str(exc)
    where = f"{host}:{port} ({what})" if what else f"{host}:{port}"
    return ListenError(f"cannot listen on {where}: {reason}")


def raise_open_file_limit() -> int | None:
    """Raise this process's soft open-file limit to its hard limit (as Go's runtime does);
    returns the soft limit now in force, None where there is none to read (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def listen_backlog(configured: int, *, somaxconn_path: str = SOMAXCONN_PATH) -> int:
    """The accept backlog to ask for: ``configured``, or with 0 (auto) the kernel's ceiling
    ``net.core.somaxconn`` (``DEFAULT_BACKLOG`` where that cannot be read)."""
    if configured:
        return configured
    try:
        with open(somaxconn_path, "rb") as f:
            value = int(f.read())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    return value if value > 0 else DEFAULT_BACKLOG


def connection_cap(configured: int) -> int:
    """The connection cap to enforce: ``configured``, or with 0 (auto) the open-file limit minus
    ``RESERVED_FDS``. A cap the open-file limit cannot honour raises :class:`ConfigError`."""
    try:
        import resource
    except ImportError:
        return configured or 10_000
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return configured or 1_000_000
    allowed = soft - RESERVED_FDS
    if allowed < 16:
        raise ConfigError(
            f"the open-file limit ({soft}, ulimit -n) leaves no room for connections: raise it"
        )
    if configured > allowed:
        raise ConfigError(
            f"--max-connections {configured} is more than the open-file limit allows "
            f"({soft} - {RESERVED_FDS} reserved = {allowed}): raise ulimit -n or lower it"
        )
    return configured or allowed


class Listener:
    """Protocol factory of the listening socket: counted handlers up to ``max_connections``,
    a refusal past it. Bind with :meth:`bind`, serve with a :class:`ListenSite`."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout: float,
        access_log_class: type[AbstractAccessLogger],
        handler_args: dict[str, Any] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.open = 0
        """Connections served now (refused ones not included)."""
        self.refused = 0
        """Connections refused since the start."""
        self._handler_args: dict[str, Any] = {
            "access_log_class": access_log_class,
            "keepalive_timeout": header_timeout,
            # After an answer sent before the body was read (408, 413), aiohttp reads and drops
            # what still comes for this long so the client sees the answer, not a reset; its
            # default of 10 s would let a stalled client keep the connection that long.
            "lingering_time": LINGER,
            **(handler_args or {}),
        }
        self._server: web.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lingering: set[_Refusal] = set()
        self._refused_unlogged = 0
        self._warned_at = -_WARN_EVERY

    async def bind(
        self,
        host: str,
        port: int,
        *,
        backlog: int = DEFAULT_BACKLOG,
        reuse_port: bool = False,
        what: str = "",
    ) -> asyncio.Server:
        """Bind ``host:port`` without accepting yet; :class:`ListenError` when that fails (an
        address in use, a host that does not resolve), before anything else has started.
        ``reuse_port``: share the port with the other workers of ``--workers`` (SO_REUSEPORT);
        ``what``: what the address is for, named in the error."""
        loop = self._loop = asyncio.get_running_loop()
        try:
            return await loop.create_server(
                self,
                host,
                port,
                backlog=backlog,
                start_serving=False,
                reuse_port=reuse_port or None,
            )
        except OSError as exc:  # socket.gaierror is an OSError too
            raise listen_failure(host, port, exc, what=what) from exc

    def attach(self, server: web.Server) -> None:
        """The aiohttp server whose requests the handlers run (after ``runner.setup()``)."""
        self._server = server

    def __call__(self) -> asyncio.BaseProtocol:
        server, loop = self._server, self._loop
        assert server is not None and loop is not None, "attach() before serving"
        if self.open >= self.max_connections:
            return self._refuse(loop)
        self.open += 1
        return _Handler(server, self, loop=loop, **self._handler_args)

    def abort_refusals(self) -> None:
        for refusal in list(self._lingering):
            refusal.abort()

    def _released(self) -> None:
        self.open -= 1

    def _refuse(self, loop: asyncio.AbstractEventLoop) -> asyncio.BaseProtocol:
        self.refused += 1
        self._refused_unlogged += 1
        now = loop.time()
        if now - self._warned_at >= _WARN_EVERY:
            log.warning(
                "refused %d connection(s): %d open, the --max-connections cap",
                self._refused_unlogged,
                self.open,
            )
            self._warned_at = now
            self._refused_unlogged = 0
        return _Refusal(self._lingering, loop, answer=len(self._lingering) < MAX_LINGERING_REFUSALS)


class ListenSite(web.BaseSite):
    """An aiohttp site serving a :class:`Listener`'s bound socket; ``stop()`` also aborts the
    refusals still lingering."""

    __slots__ = ("_bound", "_listener")

    def __init__(self, runner: web.BaseRunner, listener: Listener, bound: asyncio.Server) -> None:
        super().__init__(runner)
        self._listener = listener
        self._bound = bound

    @property
    def name(self) -> str:
        host, port = self._bound.sockets[0].getsockname()[:2]
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._listener.attach(server)
        self._server = self._bound
        await self._bound.start_serving()

    async def stop(self) -> None:
        await super().stop()
        self._listener.abort_refusals()


_WS_FRAME_BYTES = WS_MAX_INCOMING + 14  # the largest frame allowed, with its longest header
_WS_BYTES_BURST = WS_FRAME_BURST * _WS_FRAME_BYTES
_WS_BYTES_RATE = WS_FRAME_RATE * _WS_FRAME_BYTES


class _Handler(web.RequestHandler):
    """aiohttp's connection handler, counted by its :class:`Listener`, quiet on bad requests,
    deaf after a malformed one, a WebSocket held to its byte budget."""

    __slots__ = ("_deaf", "_inbound", "_inbound_at", "_listener")

    def __init__(self, manager: web.Server, listener: Listener, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._listener: Listener | None = listener
        self._deaf = False  # nothing more is read: a malformed request, or a WebSocket cut
        self._inbound = float(_WS_BYTES_BURST)
        self._inbound_at = 0.0

    def data_received(self, data: bytes) -> None:
        if self._payload_parser is not None and not self._deaf:  # a WebSocket's frames
            now = time.monotonic()
            if not self._inbound_at:
                self._inbound_at = now
            budget = self._inbound + (now - self._inbound_at) * _WS_BYTES_RATE
            self._inbound = min(float(_WS_BYTES_BURST), budget) - len(data)
            self._inbound_at = now
            if self._inbound < 0:
                self._deaf = True
                log.info("WebSocket peer sent past its frame budget: connection cut")
                if self.transport is not None:
                    self.transport.abort()
                return
        # Once a request fails to parse, the rest of the connection's bytes are dropped: aiohttp
        # would parse each read again, from the broken point, and queue an error quoting all it
        # had buffered (up to 32 of them while a handler runs, 15 MB from 12 MB of junk after a
        # subscription's head), each held in a cycle through its traceback. The one error is
        # answered (400, closed) once the running handler is done.
        if self._deaf:
            return
        super().data_received(data)
        messages = self._messages
        if not messages:
            return
        error, payload = messages[-1]
        if isinstance(error, _ErrInfo):
            self._deaf = True
            error.exc.__traceback__ = None
            if isinstance(error.exc, HttpProcessingError):
                error.exc.message = error.exc.message[:_KEPT_MESSAGE]
            messages[-1] = (
                _ErrInfo(error.status, error.exc, error.message[:_KEPT_MESSAGE]),
                payload,
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener._released()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # The peer sent something that is not HTTP/1.1 (aiohttp's parser refused it before any
        # response started): its fault, not ours, so no traceback. The log and the client both
        # get the kind of fault, never aiohttp's message: it quotes the bytes, credentials among
        # them (a Basic or api-key header, a cookie), in forms no redaction pattern can know.
        fault = _fault(exc)
        if isinstance(exc, BadHttpMethod):
            log.debug("non-HTTP traffic from %s: %s", request.remote, fault)
        else:
            log.warning("malformed request from %s: %s", request.remote, fault)
        return _malformed_request(status, fault)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The first middleware: a request in another version than HTTP/1.1 or HTTP/1.0 reaches no
    handler."""
    if request.version in (HttpVersion11, HttpVersion10):
        return await handler(request)
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    log.warning("malformed request from %s: unsupported version %s", request.remote, version)
    # aiohttp writes the answer in the request's version, a cached property; RFC 9110 section
    # 2.5: answer in the highest version served.
    request._cache["version"] = HttpVersion11
    return _malformed_request(400, f"unsupported version {version} (HTTP/1.1 or HTTP/1.0 only)")


def _malformed_request(status: int, fault: str) -> web.Response:
    response = error_response(status, f"malformed HTTP request: {fault}", code="malformed_request")
    response.force_close()
    return response


# What a client is told of each kind of parse error whose message quotes the request's bytes.
_FAULTS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (InvalidHeader, "invalid header"),
    (InvalidURLError, "invalid request target"),
    (BadStatusLine, "invalid request line"),
)


def _fault(exc: HttpProcessingError) -> str:
    """The fault in a request aiohttp could not parse, without the bytes its message quotes."""
    if isinstance(exc, LineTooLong):
        return f"the request line or a header is longer than {exc.args[1]} bytes"
    # llhttp's errors read "<reason>:\n\n  <bytes>\n  <pointer>" (aiohttp's _http_parser.pyx,
    # parser_error_from_errno), the reason one of llhttp's constant texts.
    reason, quoted, _ = exc.message.partition(":\n\n")
    if quoted:
        return _one_line(reason)
    return next((fault for kind, fault in _FAULTS if isinstance(exc, kind)), "invalid request head")


_KEPT_MESSAGE = 1024
"""Characters kept of a queued parse error's message, which quotes what was read (neither the
log line nor the client gets that quote: :func:`_fault`)."""


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Refusal(asyncio.Protocol):
    """One refused connection: the 503, a FIN, what the client sends discarded, then closed."""

    __slots__ = ("_answer", "_lingering", "_loop", "_timer", "_transport")

    def __init__(
        self, lingering: set[_Refusal], loop: asyncio.AbstractEventLoop, *, answer: bool
    ) -> None:
        self._lingering = lingering
        self._loop = loop
        self._answer = answer
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        transport = cast(asyncio.Transport, base)
        if not self._answer:
            transport.abort()
            return
        self._transport = transport
        self._lingering.add(self)
        transport.write(_REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self._loop.call_later(LINGER, self.abort)

    def data_received(self, data: bytes) -> None:
        """The request is never read: the answer does not depend on it."""

    def eof_received(self) -> bool:
        return False  # the client has read the answer and closed: close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._lingering.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
