"""The one boundary between runcast and aiohttp for upstream calls.

:class:`Transport` owns the pooled ``ClientSession`` and sends single attempts;
:class:`UpstreamResponse` wraps the answer and reads its body chunk by chunk under the stream
timeouts. Every aiohttp or asyncio timeout exception is translated here, with
``raise ... from exc``, into the ``gateway.errors`` hierarchy:

=======================================  =====================================================
aiohttp / asyncio                        raised as
=======================================  =====================================================
``ClientConnectorError`` (refused, DNS)  :class:`UpstreamConnectError` (nothing was sent)
``ClientSSLError`` (TLS)                 ``UpstreamConnectionError``
``ConnectionTimeoutError``               ``UpstreamTimeout("connect", connect_timeout)``
first-byte deadline expired              ``UpstreamTimeout("first_byte", first_byte_timeout)`` [1]
no chunk within ``idle_timeout``         ``UpstreamTimeout("idle", idle_timeout)``
``ClientPayloadError`` (body cut)        ``UpstreamConnectionError``
other ``ClientError`` / ``OSError``      ``UpstreamConnectionError``
=======================================  =====================================================

[1] Or ``answer_timeout``, the limit a non-streamed call passed through is sent with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import tracing
from gateway.errors import UpstreamConnectionError, UpstreamTimeout, said
from gateway.logs import credential_values
from parsers.errors import RemoteProtocolError

from .scrub import Scrubber, ScrubChain, worth_scrubbing
from .settings import UpstreamSettings

__all__ = ["Transport", "UpstreamConnectError", "UpstreamResponse"]


_NO_BODY_SKIP = ("Content-Type",)
# What UpstreamResponse.finish reads after the protocol's own end: the rest of a body (the
# chunked terminator, a server's trailing bytes) that normally arrives within a millisecond.
FINISH_SECONDS = 0.1
FINISH_BYTES = 64 * 1024
READ_BYTES = 8 * 1024
"""Most bytes one read of a body hands on. A relay publishes what one read brought as one batch,
written to every subscriber before the next is read, so a batch's fan-out is as long as a
subscriber's silence in a burst. aiohttp handed over all it had buffered, 64 KiB and more: at
N = 1,000 subscribers the fan-out of one batch took 100 ms. ``bench/serve_bench.py``, SSE burst,
N = 1,000, three runs each: 16 KiB reads, worst stall 56-71 ms at 7.1-7.8 M deliveries/s; 8 KiB,
26-47 ms at 4.4-5.4 M/s (nchan: 0.34 M/s)."""
KEY_SCRUBBERS = 256
"""Callers' keys (pass-through mode) whose scrubbers are kept for their next requests, the least
recently used dropped first: building one compiles its masked forms' pattern (1 to 4 ms)."""


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may hold (RFC 9110 section 5.5), which aiohttp refuses to write."""


def _writable(headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
    """``headers`` without the values holding control characters (``headers`` itself when none
    does): copied to a caller's response, one would fail it."""
    if not any(_CONTROL.search(value) for value in headers.values()):
        return headers
    return CIMultiDictProxy(
        CIMultiDict((name, value) for name, value in headers.items() if not _CONTROL.search(value))
    )


class UpstreamConnectError(UpstreamConnectionError):
    """No connection could be opened (refused, unreachable, DNS): the request was not sent."""


_Watch = tuple["asyncio.Future[None]", Callable[["asyncio.Future[None]"], None]]
"""A connection's ``closed`` future and the callback a response added to it."""


def _retrieved(closing: asyncio.Future[None]) -> None:
    """Mark a connection's ``closed`` future's outcome seen (no "never retrieved" warning)."""
    if not closing.cancelled():
        closing.exception()


class UpstreamResponse:
    """An upstream answer whose body has not been read yet.

    ``status``, ``reason`` and ``headers`` are the response head as received, but for header
    values with control characters, left out. The body is read
    with :meth:`read_chunk`, ``async for chunk in response`` or :meth:`read`; the first chunk must
    arrive before the request's first-byte deadline, each later one within ``idle_timeout``.
    Bodies are content-decoded (gzip/deflate) unless the request asked for ``decompress=False``,
    in which case the bytes are exactly the upstream's. With a ``scrubber`` (the key the request
    was made with: runcast's, or the caller's passed on; the upstream URL's credential query
    values) the head and every chunk come with them masked (``scrub.py``): this is where upstream bytes enter runcast. :meth:`release`
    (idempotent) gives the connection back to the pool, or closes it when the body was not read
    to the end.
    """

    __slots__ = (
        "_first_byte_deadline",
        "_first_byte_timeout",
        "_idle_timeout",
        "_on_release",
        "_resp",
        "_scrub",
        "_started",
        "_watched",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        *,
        first_byte_deadline: float,
        first_byte_timeout: float,
        idle_timeout: float,
        on_release: Callable[[], None],
        scrubber: ScrubChain | None = None,
    ) -> None:
        self._resp = resp
        self._first_byte_deadline = first_byte_deadline
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._on_release: Callable[[], None] | None = on_release
        self._started = False
        self._watched: _Watch | bool | None = False
        self.status: int = resp.status
        self.reason: str = resp.reason or ""
        self.headers: CIMultiDictProxy[str] = _writable(resp.headers)
        self._scrub = scrubber
        if scrubber is not None:
            self.reason = scrubber.text(self.reason)
            self.headers = scrubber.headers(self.headers)

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ("" when absent)."""
        return self.headers.get("Content-Type", "").partition(";")[0].strip().lower()

    @property
    def released(self) -> bool:
        return self._on_release is None

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived: what is left of it reads without waiting."""
        return self._resp.content.is_eof()

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` once the body is complete.

        Raises :class:`~gateway.errors.UpstreamTimeout` (``first_byte`` or ``idle``) or
        :class:`~gateway.errors.UpstreamConnectionError` when the connection breaks mid-body
        (a cut chunked or ``Content-Length`` body).
        """
        scrub = self._scrub
        if scrub is None:
            return await self._read_raw()
        while data := await self._read_raw():
            if out := scrub.feed(data):
                return out
        return scrub.close()

    async def _read_raw(self) -> bytes:
        content = self._resp.content
        scope: asyncio.Timeout | None = None
        phase, limit = "idle", self._idle_timeout
        try:
            # Data already buffered needs no timer: the common case while a stream is busy.
            data = content.read_nowait(READ_BYTES)
            if not data and not content.at_eof():
                if self._watched is False:
                    self._watch_close()
                if self._started:
                    deadline = asyncio.get_running_loop().time() + limit
                else:
                    phase, limit = "first_byte", self._first_byte_timeout
                    deadline = self._first_byte_deadline
                scope = asyncio.timeout_at(deadline)
                async with scope:
                    data = await content.read(READ_BYTES)
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            if scope is not None and scope.expired():
                raise UpstreamTimeout(phase, limit) from exc
            raise UpstreamConnectionError(f"upstream read failed: {said(exc)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectionError(
                f"upstream connection lost mid-body: {said(exc)}"
            ) from exc
        except RuntimeError as exc:
            # aiohttp's reader, asked to wait on a connection that closed without ending the
            # body (its parser refused what came): nothing more will come.
            if str(exc) != "Connection closed.":
                raise
            raise UpstreamConnectionError(
                "upstream connection lost mid-body: its body is malformed or cut short"
            ) from exc
        self._started = True
        return data

    def _watch_close(self) -> None:
        """Make the connection's close end the body in error when it did not end it otherwise.

        aiohttp closes the connection when its parser refuses the body (a chunk-size line that
        is not one) but tells the body's reader nothing, which would then wait for the idle
        timeout. The close is seen once ``connection_lost`` has done with the body."""
        self._watched = None
        connection = self._resp.connection
        protocol = None if connection is None else connection.protocol
        if protocol is None:
            return
        content = self._resp.content

        def ended(closing: asyncio.Future[None] | None = None) -> None:
            if closing is not None:
                _retrieved(closing)
            if not content.is_eof() and content.exception() is None:
                content.set_exception(
                    aiohttp.ClientPayloadError("the connection closed before the body ended")
                )

        closed = protocol.closed
        if closed is None:  # closed already
            ended()
        else:
            # Removed at release: a pooled connection outlives many responses.
            closed.add_done_callback(ended)
            self._watched = (closed, ended)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read_chunk()
        if not data:
            raise StopAsyncIteration
        return data

    async def read(self, *, limit: int) -> bytes:
        """The whole remaining body; :class:`~parsers.errors.RemoteProtocolError` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while data := await self.read_chunk():
            size += len(data)
            if size > limit:
                self.release()
                raise RemoteProtocolError(f"upstream body exceeds the {limit}-byte limit")
            parts.append(data)
        return b"".join(parts)

    async def finish(self) -> None:
        """Release a response whose end the protocol already saw (``data: [DONE]``): first read
        what is left of the body (discarded, at most ``FINISH_BYTES`` for ``FINISH_SECONDS``),
        so a body that ends in time leaves its connection in the pool instead of closing it.

        A server that writes its last event and the end of the body separately is the usual
        case: released at once, every such stream cost the pool a connection (a new TCP
        handshake for the next request, on both sides). Idempotent, like :meth:`release`.
        """
        if self._on_release is None:
            return
        content = self._resp.content
        try:
            if not content.at_eof():
                async with asyncio.timeout(FINISH_SECONDS):
                    left = FINISH_BYTES
                    while left > 0 and (data := await content.readany()):
                        left -= len(data)
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass  # the connection is closed instead: nothing the caller waits for is lost
        finally:
            self.release()

    def release(self) -> None:
        """Hand the connection back (closed instead if the body is unfinished). Idempotent."""
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            if isinstance(self._watched, tuple):
                closed, ended = self._watched
                closed.remove_done_callback(ended)
                # The future exists because this response asked for it: whatever ends it later
                # (an error, when the pooled connection dies) is retrieved, once per connection.
                closed.remove_done_callback(_retrieved)
                closed.add_done_callback(_retrieved)
                self._watched = None
            content = self._resp.content
            if not content.at_eof():
                # A body left unfinished: what aiohttp buffered of it (reads take at most
                # READ_BYTES, so up to its high-water mark may wait) is dropped now rather than
                # when the cycle collector frees the response's cycles.
                with contextlib.suppress(Exception):
                    content.read_nowait()
            self._resp.release()
            on_release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Transport:
    """Owns the pooled ``ClientSession`` of one upstream and sends single attempts.

    Created idle; :meth:`start` must run inside the event loop (aiohttp binds the session to
    it) and :meth:`aclose` closes every pooled connection.
    """

    __slots__ = ("_keys", "_open_responses", "_scrubbers", "_session", "_settings", "_timeout")

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._open_responses = 0
        # Runcast's key, and the upstream URL's credential query values (a function key's
        # ?code=), which go with every request, and which an error body may quote as well.
        # A key under 12 characters is a placeholder (``worth_scrubbing``); the query's
        # credentials are those ``credential_values`` tells (8 characters and more).
        secrets = [settings.api_key] if worth_scrubbing(settings.api_key) else []
        secrets += dict.fromkeys(credential_values(settings.base_url))
        self._scrubbers = tuple(Scrubber(secret.encode()) for secret in secrets)
        self._keys: OrderedDict[str, Scrubber] = OrderedDict()
        # No total and no sock_read: waits for bytes are bounded per phase in UpstreamResponse,
        # which can say *which* phase expired; `connect=None` leaves the wait for a pooled
        # connection to the first-byte deadline.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=settings.connect_timeout, sock_read=None
        )

    @property
    def open_responses(self) -> int:
        """Responses handed out and not yet released (streams in flight)."""
        return self._open_responses

    @property
    def started(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        if self._session is not None:
            return
        s = self._settings
        connector = aiohttp.TCPConnector(
            limit=s.pool_limit,
            limit_per_host=s.pool_limit_per_host,
            keepalive_timeout=s.keepalive_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # Sent bytes are the caller's; aiohttp must not add JSON of its own or cookies.
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _released(self) -> None:
        self._open_responses -= 1

    def _scrub_chain(self, key: str | None) -> ScrubChain | None:
        """What scrubs the answer to a request made with ``key``: runcast's own key always, and
        ``key`` when it is another one (the caller's, passed on), whose answer may quote it to
        the channel's every subscriber as much as runcast's."""
        scrubbers = self._scrubbers
        if worth_scrubbing(key) and key != self._settings.api_key:
            keys = self._keys
            scrubber = keys.get(key)
            if scrubber is None:
                scrubber = keys[key] = Scrubber(key.encode())
                if len(keys) > KEY_SCRUBBERS:
                    keys.popitem(last=False)
            else:
                keys.move_to_end(key)
            scrubbers = (*scrubbers, scrubber)
        return ScrubChain(scrubbers) if scrubbers else None

    async def send(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        decompress: bool = True,
        key: str | None = None,
        first_byte_timeout: float | None = None,
    ) -> UpstreamResponse:
        """One attempt: open (or reuse) a connection, send, and wait for the response head.

        ``key`` is the one ``headers`` authenticate with (runcast's or the caller's): it is
        masked in the answer. ``first_byte_timeout`` replaces the settings' for this request
        (a non-streamed call passed through waits ``answer_timeout``)."""
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient used before start() or after aclose()")
        s = self._settings
        if first_byte_timeout is None:
            first_byte_timeout = s.first_byte_timeout
        deadline = asyncio.get_running_loop().time() + first_byte_timeout
        scope = asyncio.timeout_at(deadline)
        sent = dict(headers)
        traced = tracing.span(
            "runcast.upstream", **{"http.request.method": method, "url.path": url.path}
        )
        try:
            async with scope:
                with traced:
                    tracing.inject(sent)
                    resp = await session.request(
                        method,
                        url,
                        headers=sent,
                        data=body,
                        # aiohttp would label a bodiless POST (cancel) application/octet-stream.
                        skip_auto_headers=_NO_BODY_SKIP if body is None else (),
                        allow_redirects=False,  # never carry the key to another origin
                        auto_decompress=decompress,
                        proxy=s.proxy,
                    )
                    tracing.set_attribute("http.response.status_code", resp.status)
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamTimeout("connect", s.connect_timeout) from exc
        except aiohttp.ClientSSLError as exc:
            # A TLS failure is not transient; do not let it pass as "nothing was sent, retry".
            raise UpstreamConnectionError(
                f"TLS failure with the upstream ({type(exc).__name__})"
            ) from exc
        except aiohttp.ClientProxyConnectionError as exc:
            raise UpstreamConnectError(
                f"cannot connect to the upstream's proxy: {_refused(exc)}"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect to the upstream: {_refused(exc)}") from exc
        except aiohttp.ClientHttpProxyError as exc:
            # The proxy refused the tunnel (CONNECT) to an https:// upstream: 403, 407...
            raise UpstreamConnectError(
                f"the upstream's proxy refused the connection (HTTP {exc.status})"
            ) from exc
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            if scope.expired():
                raise UpstreamTimeout("first_byte", first_byte_timeout) from exc
            raise UpstreamConnectionError(f"upstream request failed: {said(exc)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectionError(f"upstream request failed: {said(exc)}") from exc
        if resp.status == 407 and s.proxy is not None:
            # Only a proxy says 407: it refused to forward a plain http:// request (through
            # CONNECT, for https://, aiohttp raises ClientHttpProxyError above).
            resp.close()
            raise UpstreamConnectError("the upstream's proxy refused the connection (HTTP 407)")
        if not 200 <= resp.status <= 599:
            # A 101 that switched to no protocol, or no HTTP status at all: nothing a caller's
            # client could parse or use. The connection is in an unknown state: closed.
            resp.close()
            raise RemoteProtocolError(f"upstream answered with status {resp.status}")
        self._open_responses += 1
        return UpstreamResponse(
            resp,
            first_byte_deadline=deadline,
            first_byte_timeout=first_byte_timeout,
            idle_timeout=s.idle_timeout,
            on_release=self._released,
            scrubber=self._scrub_chain(key),
        )


def _refused(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be made, without aiohttp's text: callers get these messages,
    and the upstream's address (an internal name, often) is the operator's to know, not theirs."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its name did not resolve"
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return "the connection failed"
