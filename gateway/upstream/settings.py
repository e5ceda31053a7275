"""Typed configuration of one upstream Assistants API (:class:`UpstreamSettings`).

Strict like every configuration object of the project: unknown keys and wrong types are rejected
when it is built from a mapping (``msgspec.convert(data, UpstreamSettings)``), and impossible
values raise :class:`~gateway.errors.ConfigError` however it is built.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import msgspec

from gateway.errors import ConfigError
from gateway.logs import masked_url

from .proxy import check_proxy_url

__all__ = ["UpstreamSettings"]


class UpstreamSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the upstream is, how to authenticate, and the timeout / retry / pool limits.

    Timeouts fit streams (spec Appendix C, STYLE "aiohttp"): there is deliberately no total
    timeout. ``connect_timeout`` bounds the TCP/TLS connect, ``first_byte_timeout`` runs from the
    start of a request until the first body byte (it covers the wait for the response head), and
    ``idle_timeout`` bounds every later wait for the next body chunk, so a run may stream for hours
    as long as bytes keep coming. A non-streamed call the proxy passes through waits for its first
    byte up to ``answer_timeout`` instead: the upstream writes nothing until the whole answer is
    generated, which a reasoning model may take minutes to do.
    """

    base_url: str
    """Root of the API including its version prefix, e.g. ``http://127.0.0.1:8001/v1``."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer``; when None the caller passes its own key per call."""
    organization: str | None = None
    """``OpenAI-Organization`` header, sent when set (spec §1.1)."""
    project: str | None = None
    """``OpenAI-Project`` header, sent when set (spec §1.1)."""
    proxy: str | None = None
    """HTTP proxy of every upstream request (``http://[user:password@]host:port``); when None,
    the environment's ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` decide (``proxy.py``)."""

    connect_timeout: float = 10.0
    """Seconds to open a connection (the openai SDK uses 5 s; a loaded upstream may need more)."""
    first_byte_timeout: float = 60.0
    """Seconds from sending a request to its first body byte (streamed and runcast's own calls)."""
    answer_timeout: float = 600.0
    """Seconds from sending a non-streamed call passed through (``/v1/*``: a chat completion, a
    response, a file) to the first byte of its answer, the openai SDK's own default timeout."""
    idle_timeout: float = 120.0
    """Seconds allowed between two body chunks (never a total timeout on a stream)."""

    max_retries: int = 2
    """Retries after the first attempt, only where safe (policy table in ``gateway.upstream``); 2 as in the openai SDK."""
    backoff_base: float = 0.5
    """First backoff delay in seconds; doubles per retry, with jitter (the SDK starts at 0.5 s)."""
    backoff_max: float = 8.0
    """Cap of one backoff delay in seconds (the SDK caps at 8 s)."""
    retry_after_max: float = 60.0
    """A ``Retry-After`` longer than this is not waited for: the 429/503 is raised instead (SDK: 60 s)."""

    pool_limit: int = 1000
    """Connections open to the upstream at once (aiohttp ``TCPConnector(limit=)``; 0 = unlimited).
    Every streamed run holds one for its whole stream: past the limit a new run waits for one."""
    pool_limit_per_host: int = 0
    """Per-host connection cap (0 = only ``pool_limit`` applies)."""
    keepalive_timeout: float = 15.0
    """Seconds an idle pooled connection is kept (aiohttp default); keep it below the upstream's own."""
    max_error_body_bytes: int = 1 << 20
    """Error bodies are read up to this size for :class:`~gateway.errors.UpstreamHTTPError`."""
    max_response_bytes: int = 64 << 20
    """Bodies runcast reads whole (its own non-streamed calls, a proxied error answer) larger
    than this are refused (bounded memory); a proxied 2xx body is relayed as it comes instead."""
    max_event_bytes: int | None = None
    """Largest SSE line/event accepted on a run stream; None keeps ``parsers.sse``'s default."""
    max_stream_bytes: int = 64 << 20
    """Most body bytes one streamed run, response or completion may bring (across resumptions
    of a cut stream; each segment after tool outputs counts afresh); 0 = no limit. Past it,
    runcast stops reading and ends the stream with its error event (``runcast.upstream_error``,
    ``runcast.upstream_lost``; reason ``stream_too_large``): what its channels hold (history,
    snapshot state) grows with what the stream brings, so an upstream that never ends a stream
    would otherwise grow the process until it dies. 64 MiB is some 300,000 delta events, past
    any model's output limit."""

    def __post_init__(self) -> None:
        shown = masked_url(self.base_url)
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"upstream base_url must be an http(s) URL, got {shown!r}")
        if "@" in urlsplit(self.base_url).netloc:
            # Every upstream request carries an Authorization header (runcast's key or the
            # caller's), which aiohttp refuses to send beside credentials in the URL.
            raise ConfigError(
                f"upstream base_url must not carry credentials (user:password@), got {shown!r}:"
                " the upstream key goes in OPENAI_API_KEY (or the variable --upstream-key-env"
                " names)"
            )
        if self.proxy is not None and (problem := check_proxy_url(self.proxy)) is not None:
            raise ConfigError(f"upstream proxy {masked_url(self.proxy)!r}: {problem}")
        for name in ("connect_timeout", "first_byte_timeout", "answer_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"upstream {name} must be > 0")
        for name in ("backoff_base", "backoff_max", "retry_after_max", "keepalive_timeout"):
            # NaN is no more a time than -1 (asyncio.sleep(nan) and aiohttp's timer refuse it).
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(
                    f"upstream {name} must be a finite number >= 0, got {getattr(self, name)!r}"
                )
        for name in ("max_retries", "pool_limit", "pool_limit_per_host", "max_stream_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"upstream {name} must be >= 0")
        for name in ("max_error_body_bytes", "max_response_bytes", "max_event_bytes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"upstream {name} must be > 0")

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the key and the URL's query values must not.
        key = None if self.api_key is None else "***"
        return (
            f"UpstreamSettings(base_url={masked_url(self.base_url)!r}, api_key={key}, "
            f"organization={self.organization!r}, project={self.project!r}, "
            f"proxy={None if self.proxy is None else masked_url(self.proxy)!r})"
        )
