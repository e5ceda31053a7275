"""The gateway's branches of the :class:`~parsers.errors.RuncastError` hierarchy.

The whole tree is drawn in the docstring of ``parsers/errors.py``. Foreign exceptions (aiohttp,
asyncio timeouts) are translated into these at the one boundary that touches the library,
with ``raise ... from exc``; :func:`said` is what their messages may repeat of an aiohttp or
socket error (the upstream client's and the tool webhooks').
"""

from __future__ import annotations

from typing import Any

import aiohttp

from parsers.errors import RemoteProtocolError, RuncastError

__all__ = [
    "REDIS_UNREACHABLE",
    "BrokerUnavailable",
    "ConfigError",
    "ListenError",
    "StreamTooLarge",
    "StreamTruncated",
    "SubscriberError",
    "ToolError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamNotAStream",
    "UpstreamTimeout",
    "said",
]


class UpstreamError(RuncastError):
    """Talking to the upstream Assistants API failed."""


class UpstreamConnectionError(UpstreamError):
    """The upstream could not be reached, or the connection broke before a response."""


class UpstreamTimeout(UpstreamError):
    """A connect, time-to-first-byte or idle-between-events timeout expired."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"upstream {phase} timeout after {seconds:g}s")
        self.phase = phase
        self.seconds = seconds


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with a non-2xx status.

    ``body`` is the parsed JSON body when it was JSON (the ``{"error": {...}}`` form), else the raw
    bytes; ``error`` is the inner error object when present.
    """

    def __init__(self, status: int, body: Any, *, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        inner = body.get("error") if isinstance(body, dict) else None
        self.error: dict[str, Any] | None = inner if isinstance(inner, dict) else None
        message = self.error.get("message") if self.error else None
        super().__init__(f"upstream HTTP {status}: {message or body!r}")


_LAST_WORD = {"response": "its terminal event", "chat": "[DONE]"}


class StreamTruncated(UpstreamError):
    """The upstream stream ended without ``done`` while the run was not terminal (or, for
    another ``kind`` of stream, before its terminal event or ``[DONE]``).

    ``last_status`` is the last run status seen on the stream (None if no run event arrived);
    ``run_id``/``thread_id`` identify the run when known. ``partial_event`` tells whether bytes of an
    unterminated event were pending at EOF. ``early_done``: the stream did send ``done``, but
    before the run's last word (a run stream ends it only after one, spec §2.1).
    """

    def __init__(
        self,
        *,
        last_status: str | None,
        run_id: str | None = None,
        thread_id: str | None = None,
        partial_event: bool = False,
        kind: str = "run",
        early_done: bool = False,
    ) -> None:
        if kind == "run":
            ended = "sent 'done' before the run ended" if early_done else "ended without 'done'"
            said = f"upstream stream for run {run_id} {ended} (last run status: {last_status})"
        else:
            said = (
                f"upstream stream of {kind} {run_id} ended before {_LAST_WORD.get(kind, 'its end')}"
            )
        super().__init__(said)
        self.kind = kind
        self.last_status = last_status
        self.run_id = run_id
        self.thread_id = thread_id
        self.partial_event = partial_event
        self.early_done = early_done


class StreamTooLarge(UpstreamError):
    """One upstream stream brought more than ``UpstreamSettings.max_stream_bytes``: it is cut
    there and never resumed (a runaway generation, or an upstream that never ends a body)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upstream stream passed {limit} bytes (max_stream_bytes)")
        self.limit = limit


class UpstreamNotAStream(RemoteProtocolError):
    """A streamed call was answered 2xx with a whole JSON or HTML body instead of an event
    stream (a server that ignores ``"stream": true``): the request was processed, so sending it
    again would generate, and bill, once more."""


class SubscriberError(RuncastError):
    """A subscriber's request cannot be served (HTTP status and a stable code attached)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers


REDIS_UNREACHABLE = "the cluster's Redis is unreachable; retry shortly"
"""What a client is told when a request needs the cluster's Redis while it is away (503
``broker_unavailable``); Redis's address and error stay in the log."""


class BrokerUnavailable(RuncastError, RuntimeError):
    """The cluster's Redis is unreachable and a publish could be neither appended nor held for
    re-append (Redis mode)."""


class ToolError(RuncastError):
    """A tool handler raised, timed out, or received arguments that are not valid JSON."""

    def __init__(self, name: str, tool_call_id: str, message: str) -> None:
        super().__init__(f"tool {name!r} ({tool_call_id}): {message}")
        self.name = name
        self.tool_call_id = tool_call_id


class ConfigError(RuncastError):
    """Settings or command-line arguments are invalid."""


class ListenError(RuncastError):
    """The gateway cannot listen where it was told to: the address is in use, the host does not
    resolve, or the port is not allowed."""


def said(exc: BaseException) -> str:
    """What an aiohttp or socket error may tell runcast's callers: its kind, and for a socket's
    own error the system's words. Never aiohttp's text: the ``repr`` of a response error carries
    the request's headers, the upstream key among them, and a parse error's message quotes the
    bytes the upstream sent. aiohttp's error stays chained (``raise ... from``), for a traceback."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        what = "the server closed the connection"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        what = "its body is malformed or cut short"
    elif isinstance(exc, aiohttp.ClientResponseError):
        what = "its answer is not valid HTTP/1.1"
    elif isinstance(exc, OSError) and exc.strerror:
        what = exc.strerror
    else:
        what = "the connection failed"
    return f"{what} ({type(exc).__name__})"
