"""What subscribers are told when an upstream stream fails, and what a recovery found.

``runcast.upstream_error`` carries ``{"error": {"message", "type": "upstream_error", "code",
"param"}, "reason", "last_status", "run_id", "thread_id"}``; ``reason`` (= ``error.code``) is
``stream_truncated``, ``connect_timeout``/``first_byte_timeout``/``idle_timeout``,
``connection_lost``, ``stream_too_large`` (past ``max_stream_bytes``: not recovered, not
resumed), ``http_<status>`` (a continuation refused) or ``protocol_error``; for a relay stopped by
other than the upstream after its creator's response began (:func:`stopped_message`), only the
creator gets it, with ``broker_unavailable`` (the cluster's Redis) or ``internal_error``. The
``error`` member makes the openai SDK raise ``APIError`` for the creator (spec §6.2) instead of
ending its stream silently.

``runcast.recovered`` carries ``{"run_id", "thread_id", "reason", "status", "missed":
{"messages": n, "steps": n}, "complete"}``: the run was found settled (``status``) after its stream
broke off for ``reason`` (as in the ``upstream_error`` before it), and the ``missed`` final messages
and steps follow it (``missed.py``; ``complete`` is false when a listing could not be read to its
end), then the settled Run as ``thread.run.<status>``. (A Responses stream's ``runcast.recovered``
has its own shape: ``protocols/responses_recovery.py``.)

How a run's end is learnt after its stream broke off is its protocol's
(:meth:`~gateway.runs.protocol.RunProtocol.recover`; Assistants: ``assistants/recovery.py``);
what it found is a :class:`Recovery`.
"""

from __future__ import annotations

import logging

import msgspec
from redis.exceptions import RedisError

from gateway.errors import (
    REDIS_UNREACHABLE,
    BrokerUnavailable,
    StreamTooLarge,
    StreamTruncated,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from gateway.hub import HubEvent
from parsers.errors import RemoteProtocolError

from .missed import Missed

__all__ = [
    "RECOVERED_EVENT",
    "UPSTREAM_ERROR_EVENT",
    "Recovery",
    "failure_reason",
    "recovered_event",
    "stopped_message",
    "upstream_error_event",
]

log = logging.getLogger("runcast.relay")

UPSTREAM_ERROR_EVENT = "runcast.upstream_error"
RECOVERED_EVENT = "runcast.recovered"


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str
    code: str
    param: None = None


class _UpstreamError(msgspec.Struct, frozen=True, kw_only=True):
    error: _ErrorBody
    reason: str
    last_status: str | None
    run_id: str | None
    thread_id: str | None


_encode = msgspec.json.Encoder().encode


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` naming ``exc`` in ``runcast.upstream_error`` and ``runcast.recovered``."""
    if isinstance(exc, StreamTruncated):
        return "stream_truncated"
    if isinstance(exc, StreamTooLarge):
        return "stream_too_large"
    if isinstance(exc, UpstreamTimeout):
        return f"{exc.phase}_timeout"
    if isinstance(exc, UpstreamHTTPError):
        return f"http_{exc.status}"
    if isinstance(exc, UpstreamConnectionError):
        return "connection_lost"
    if isinstance(exc, UpstreamError | RemoteProtocolError):
        return "protocol_error"
    if isinstance(exc, RedisError | BrokerUnavailable):
        return "broker_unavailable"
    return "internal_error"


def stopped_message(exc: BaseException, what: str) -> str:
    """The creator's ``error.message`` when its relay stopped on ``exc``, not the upstream's
    doing (``what``: "run" or the stream's kind). Redis's address and the exception's text stay
    in the log (the registry's line)."""
    why = REDIS_UNREACHABLE if isinstance(exc, RedisError | BrokerUnavailable) else "internal error"
    return f"runcast stopped relaying this {what} ({why}); follow it on its channels"


def upstream_error_event(
    exc: BaseException,
    *,
    message: str,
    last_status: str | None,
    run_id: str | None,
    thread_id: str | None,
) -> HubEvent:
    """The ``runcast.upstream_error`` event reporting ``exc`` (``message``: its scrubbed text)."""
    reason = failure_reason(exc)
    body = _UpstreamError(
        error=_ErrorBody(message=message, type="upstream_error", code=reason),
        reason=reason,
        last_status=last_status,
        run_id=run_id,
        thread_id=thread_id,
    )
    return HubEvent(UPSTREAM_ERROR_EVENT, _encode(body))


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """A run found settled after its stream broke off, and what its channels missed."""

    status: str
    run: bytes
    """The settled Run, as the upstream returned it."""
    missed: Missed


class _Counts(msgspec.Struct, frozen=True, kw_only=True):
    messages: int
    steps: int


class _Recovered(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str
    reason: str
    status: str
    missed: _Counts
    complete: bool


def recovered_event(recovery: Recovery, *, reason: str, run_id: str, thread_id: str) -> HubEvent:
    """The ``runcast.recovered`` notice that precedes what a recovery publishes."""
    lost = recovery.missed
    body = _Recovered(
        run_id=run_id,
        thread_id=thread_id,
        reason=reason,
        status=recovery.status,
        missed=_Counts(messages=lost.messages, steps=lost.steps),
        complete=lost.complete,
    )
    return HubEvent(RECOVERED_EVENT, _encode(body))
