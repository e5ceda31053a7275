"""The upstream client: one pooled session per upstream, and the raw
:meth:`UpstreamClient.request` that the transparent ``/v1/*`` proxy goes through; the typed run
operations of the Assistants API come from
:class:`~gateway.upstream.assistants.operations.RunOperations`.

Everything funnels into :meth:`UpstreamClient.send`, which applies the default headers, sends
one attempt through :class:`~gateway.upstream.transport.Transport` and retries where the policy
of ``gateway.upstream`` allows. Typed operations turn a non-2xx answer into
:class:`~gateway.errors.UpstreamHTTPError`; ``request``/``send`` hand every answer back as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import random
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import msgspec
import orjson
from multidict import CIMultiDict

from gateway.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamNotAStream,
    UpstreamTimeout,
)
from parsers.errors import RemoteProtocolError

from .assistants.operations import RunOperations
from .assistants.stream import RunStream
from .body import Query, build_url
from .retry import RetryPolicy
from .settings import UpstreamSettings
from .transport import Transport, UpstreamConnectError, UpstreamResponse

__all__ = ["UpstreamClient", "UpstreamStatistics"]

# Content types that cannot be an event stream, refused before reading a streamed answer.
_NOT_A_STREAM = frozenset({"application/json", "text/html"})
_ASSISTANTS_PATHS = ("/threads", "/assistants")
"""Paths of the Assistants API, whose every call needs ``OpenAI-Beta: assistants=v2``."""

T = TypeVar("T")


def _user_agent() -> str:
    try:
        return f"runcast/{importlib.metadata.version('runcast')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - bare source tree
        return "runcast"


_USER_AGENT: Final = _user_agent()

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Per-connection headers (RFC 9110 §7.6.1) plus Host and Content-Length, which belong to *this*
connection and body: dropped from caller-supplied headers so a proxied request cannot smuggle them."""

_KEY_SCOPE: Final = frozenset({"openai-organization", "openai-project"})
"""Headers that scope the key they come with (spec §1.1): only runcast's own with its key."""


class UpstreamStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one client since it was created."""

    attempts: int
    """HTTP attempts started, retries included."""
    retries: int
    """Attempts that were retries of a failed one."""
    open_responses: int
    """Responses (streams included) handed out and not yet released."""


class UpstreamClient(RunOperations):
    """Client of one OpenAI-compatible Assistants upstream.

    ::

        async with UpstreamClient(settings) as upstream:
            run = await upstream.create_run("thread_1", {"assistant_id": "asst_1"})
            async with upstream.stream_run("thread_1", {"assistant_id": "asst_1"}) as stream:
                async for item in stream:
                    ...

    Every call takes ``api_key`` (used instead of ``settings.api_key``, e.g. the caller's own
    bearer token when the gateway holds none) and ``headers`` (extra headers; they override the
    defaults, hop-by-hop ones are dropped, and so are ``OpenAI-Organization``/``OpenAI-Project``
    when the call uses ``settings.api_key``: those of the settings go with it). Run-starting bodies may be bytes (sent as given) or a
    mapping; see ``gateway.upstream.body``.
    """

    __slots__ = ("_attempts", "_base_headers", "_policy", "_retries", "_settings", "_transport")

    def __init__(self, settings: UpstreamSettings, *, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._transport = Transport(settings)
        self._policy = RetryPolicy(settings, rng=rng)
        self._attempts = 0
        self._retries = 0
        base: CIMultiDict[str] = CIMultiDict()
        base["User-Agent"] = _USER_AGENT
        if settings.organization:
            base["OpenAI-Organization"] = settings.organization
        if settings.project:
            base["OpenAI-Project"] = settings.project
        self._base_headers = base

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def settings(self) -> UpstreamSettings:
        return self._settings

    async def start(self) -> None:
        """Open the connection pool (idempotent). Must run inside the event loop."""
        await self._transport.start()

    async def aclose(self) -> None:
        """Close the pool; responses still held are cut."""
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> UpstreamStatistics:
        return UpstreamStatistics(
            attempts=self._attempts,
            retries=self._retries,
            open_responses=self._transport.open_responses,
        )

    # -- raw requests --------------------------------------------------------------------------

    def _headers(
        self,
        api_key: str | None,
        extra: Mapping[str, str] | None,
        *,
        has_body: bool,
        accept: str | None,
    ) -> CIMultiDict[str]:
        headers = self._base_headers.copy()
        key = api_key if api_key is not None else self._settings.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if has_body:
            headers["Content-Type"] = "application/json"
        if accept:
            headers["Accept"] = accept
        if extra:
            # With runcast's own key, the organization and project are the ones configured
            # with it: a caller must not bill or scope runcast's key elsewhere.
            own_key = api_key is None and bool(self._settings.api_key)
            dropped = _HOP_BY_HOP | _KEY_SCOPE if own_key else _HOP_BY_HOP
            for name, value in extra.items():
                if name.lower() not in dropped:
                    headers[name] = value
        return headers

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        max_retries: int | None = None,
        decompress: bool = True,
        accept: str | None = None,
        first_byte_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send ``method path`` (relative to ``base_url``, already percent-encoded) and return the
        answer, whatever its status, with the body unread. The caller must ``release()`` it.

        ``body`` bytes go out unchanged. ``max_retries`` overrides the settings' budget (0: no
        retry at all), ``first_byte_timeout`` the settings' wait for the first byte (the
        transparent proxy gives a non-streamed call ``answer_timeout``). Raises
        ``UpstreamConnectError``/``UpstreamConnectionError`` or ``UpstreamTimeout`` when no
        answer arrived.
        """
        method = method.upper()
        budget = self._settings.max_retries if max_retries is None else max_retries
        url = build_url(self._settings.base_url, path, query)
        hdrs = self._headers(api_key, headers, has_body=body is not None, accept=accept)
        key = api_key if api_key is not None else self._settings.api_key
        if path.startswith(_ASSISTANTS_PATHS) and "OpenAI-Beta" not in hdrs:
            # Required on every Assistants call (spec §1.1); sent on those only: the Responses
            # and Chat endpoints are no beta, and a strict server may refuse the header there.
            hdrs["OpenAI-Beta"] = "assistants=v2"
        attempt = 0
        while True:
            self._attempts += 1
            delay: float | None
            try:
                response = await self._transport.send(
                    method,
                    url,
                    headers=hdrs,
                    body=body,
                    decompress=decompress,
                    key=key,
                    first_byte_timeout=first_byte_timeout,
                )
            except UpstreamConnectError:
                delay = self._policy.after_connect_error(attempt) if attempt < budget else None
                if delay is None:
                    raise
            except UpstreamTimeout as exc:
                # Only a connect timeout proves nothing was sent; a first-byte timeout is not
                # retried even for GET, having already waited that long.
                if exc.phase != "connect" or attempt >= budget:
                    raise
                delay = self._policy.after_connect_error(attempt)
            except UpstreamConnectionError:
                delay = self._policy.after_send_error(method, attempt) if attempt < budget else None
                if delay is None:
                    raise
            else:
                if response.ok or attempt >= budget:
                    return response
                delay = self._policy.after_status(
                    method, response.status, response.headers, attempt
                )
                if delay is None:
                    return response
                await self._discard(response)
            attempt += 1
            self._retries += 1
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        max_retries: int | None = None,
        decompress: bool = True,
        first_byte_timeout: float | None = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """:meth:`send` as an async context manager that releases the response on exit.

        For the transparent proxy: ``async with upstream.request("POST", path, body=raw) as r``,
        then relay ``r.status``, ``r.headers`` and ``async for chunk in r``. ``path`` is relative
        to ``base_url`` (``/threads/...``, without the ``/v1`` prefix) and, like a string
        ``query``, is sent exactly as given. A body is labelled ``application/json`` unless
        ``headers`` carries the client's own ``Content-Type`` (multipart uploads). With
        ``decompress=False`` the body bytes are the upstream's exactly (``Content-Encoding``
        still applies); with the default they are decoded and that header no longer holds.
        Hop-by-hop response headers (``Transfer-Encoding``, ``Connection``...) are the
        relaying side's to drop.
        """
        response = await self.send(
            method,
            path,
            query=query,
            body=body,
            headers=headers,
            api_key=api_key,
            max_retries=max_retries,
            decompress=decompress,
            first_byte_timeout=first_byte_timeout,
        )
        try:
            yield response
        finally:
            response.release()

    async def _discard(self, response: UpstreamResponse) -> None:
        # Reading a short error body keeps the connection reusable for the retry.
        try:
            await response.read(limit=self._settings.max_error_body_bytes)
        except (UpstreamError, RemoteProtocolError):
            pass
        finally:
            response.release()

    async def _http_error(self, response: UpstreamResponse) -> UpstreamHTTPError:
        """Read a non-2xx answer into the exception that reports it (response released)."""
        try:
            raw = await response.read(limit=self._settings.max_error_body_bytes)
        except (UpstreamError, RemoteProtocolError):
            raw = b""
        finally:
            response.release()
        body: Any = raw
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw
        headers = {name.lower(): value for name, value in response.headers.items()}
        return UpstreamHTTPError(response.status, body, headers=headers)

    # -- the hooks the typed operations of RunOperations use -------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        body: bytes | None = None,
        query: Query = None,
        api_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> T:
        response = await self.send(
            method,
            path,
            query=query,
            body=body,
            headers=headers,
            api_key=api_key,
            accept="application/json",
        )
        if not response.ok:
            raise await self._http_error(response)
        try:
            data = await response.read(limit=self._settings.max_response_bytes)
        finally:
            response.release()
        return decode(data)

    async def open_stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: Query = None,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        max_retries: int | None = None,
    ) -> UpstreamResponse:
        """Send a request that answers with an event stream; its response, body unread.

        Raises :class:`~gateway.errors.UpstreamHTTPError` for a non-2xx answer and
        :class:`~gateway.errors.UpstreamNotAStream` (a ``RemoteProtocolError``) for a JSON or
        HTML answer (a server that ignored ``"stream": true``, spec §1.4, or an error page from
        a proxy in between); other content types are read as a stream, as the SDKs do. The
        caller must ``release()`` the response.
        """
        response = await self.send(
            method,
            path,
            query=query,
            body=body,
            headers=headers,
            api_key=api_key,
            max_retries=max_retries,
            accept="text/event-stream",
        )
        if not response.ok:
            raise await self._http_error(response)
        if response.content_type in _NOT_A_STREAM:
            response.release()
            raise UpstreamNotAStream(
                f"upstream answered {path} with {response.content_type} instead of an event stream"
            )
        return response

    def _stream(
        self,
        path: str,
        body: bytes,
        *,
        query: Query = None,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        run_id: str | None = None,
        thread_id: str | None = None,
        max_retries: int | None = None,
    ) -> RunStream:
        async def open_stream() -> UpstreamResponse:
            return await self.open_stream(
                "POST",
                path,
                body=body,
                query=query,
                api_key=api_key,
                headers=headers,
                max_retries=max_retries,
            )

        return RunStream(
            open_stream,
            max_event_bytes=self._settings.max_event_bytes,
            max_bytes=self._settings.max_stream_bytes,
            run_id=run_id,
            thread_id=thread_id,
        )
