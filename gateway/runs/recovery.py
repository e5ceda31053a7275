"""What subscribers are told when an upstream stream fails, and how the run's end is learnt.

``runcast.upstream_error`` carries ``{"error": {"message", "type": "upstream_error", "code",
"param"}, "reason", "last_status", "run_id", "thread_id"}``; ``reason`` (= ``error.code``) is
``stream_truncated``, ``connect_timeout``/``first_byte_timeout``/``idle_timeout``,
``connection_lost``, ``http_<status>`` (a continuation refused) or ``protocol_error``. The
``error`` member makes the openai SDK raise ``APIError`` for the creator (spec §6.2) instead of
ending its stream silently.

``runcast.recovered`` carries ``{"run_id", "thread_id", "reason", "status", "missed":
{"messages": n, "steps": n}, "complete"}``: the run was found settled (``status``) after its stream
broke off for ``reason`` (as in the ``upstream_error`` before it), and the ``missed`` final messages
and steps follow it (``missed.py``; ``complete`` is false when a listing could not be read to its
end), then the settled Run as ``thread.run.<status>``. (A Responses stream's ``runcast.recovered``
has its own shape: ``protocols/responses_recovery.py``.)

The run's end is learnt by polling (after its stream broke off, or after runcast cancelled it).
``GET /threads/{thread_id}/runs/{run_id}`` (spec §1.2) is polled at the interval the upstream
suggests (``openai-poll-after-ms``, spec §1.1; 1000 ms when absent, as the openai SDK's ``poll()``)
until the run settles: a terminal status or ``requires_action`` (the statuses at which the SDK's
poll helper stops, spec §5). Failed polls are retried with backoff until the deadline
(``polling.py``), so an upstream that is unreachable for a while does not end the recovery early.
The raw Run bytes are returned so they can be relayed unchanged.
"""

from __future__ import annotations

import logging

import msgspec

from gateway.errors import (
    StreamTruncated,
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from gateway.hub import HubEvent
from gateway.upstream import UpstreamClient
from parsers.assistants.signals import ACTION_STATUS, SETTLED_STATUSES

from .assistants.runs import MAX_RUN_BYTES, run_path, run_status
from .missed import FinalIds, Missed, missed
from .polling import Poller

__all__ = [
    "RECOVERED_EVENT",
    "UPSTREAM_ERROR_EVENT",
    "Recovery",
    "failure_reason",
    "poll_settled_run",
    "recover_run",
    "recovered_event",
    "settled_run",
    "upstream_error_event",
]

log = logging.getLogger("runcast.relay")

UPSTREAM_ERROR_EVENT = "runcast.upstream_error"
RECOVERED_EVENT = "runcast.recovered"
_DEFAULT_INTERVAL = 1.0
_MIN_INTERVAL = 0.05


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
    if isinstance(exc, UpstreamTimeout):
        return f"{exc.phase}_timeout"
    if isinstance(exc, UpstreamHTTPError):
        return f"http_{exc.status}"
    if isinstance(exc, UpstreamConnectionError):
        return "connection_lost"
    return "protocol_error"


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


def _interval(value: str | None) -> float:
    try:
        ms = float(value) if value is not None else _DEFAULT_INTERVAL * 1000
    except ValueError:
        ms = _DEFAULT_INTERVAL * 1000
    return max(ms / 1000.0, _MIN_INTERVAL)


async def settled_run(poller: Poller, thread_id: str, run_id: str) -> tuple[str, bytes] | None:
    """``(status, run JSON)`` once the run has settled; None when ``poller`` gives up first."""
    path = run_path(thread_id, run_id)
    while True:
        answer = await poller.get(path, limit=MAX_RUN_BYTES)
        if answer is None:
            return None
        data, headers = answer
        try:
            status = run_status(data)
        except msgspec.DecodeError as exc:
            log.warning("run %s: the polled run is not JSON: %s", run_id, exc)
            return None
        if status in SETTLED_STATUSES:
            return status, data
        if not await poller.sleep(_interval(headers.get("openai-poll-after-ms"))):
            log.warning("run %s: still %s at the recovery deadline", run_id, status)
            return None


async def poll_settled_run(
    upstream: UpstreamClient,
    thread_id: str,
    run_id: str,
    *,
    within: float,
    api_key: str | None = None,
) -> tuple[str, bytes] | None:
    """``(status, run JSON)`` once the run has settled, or None when ``within`` seconds pass first
    (or the upstream answers definitively that it cannot tell)."""
    poller = Poller(upstream, within=within, api_key=api_key, what=f"run {run_id}")
    return await settled_run(poller, thread_id, run_id)


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """A run found settled after its stream broke off, and what its channels missed."""

    status: str
    run: bytes
    """The settled Run, as the upstream returned it."""
    missed: Missed


async def recover_run(
    upstream: UpstreamClient,
    thread_id: str,
    run_id: str,
    seen: FinalIds,
    *,
    within: float,
    api_key: str | None = None,
) -> Recovery | None:
    """Poll the run until it settles, then list what ``seen`` lacks; all within ``within``
    seconds. None when the run's end could not be learnt."""
    poller = Poller(upstream, within=within, api_key=api_key, what=f"run {run_id}")
    found = await settled_run(poller, thread_id, run_id)
    if found is None:
        return None
    status, data = found
    lost = await missed(
        poller,
        thread_id,
        run_id,
        seen,
        limit=upstream.settings.max_response_bytes,
        waiting=status == ACTION_STATUS,
    )
    return Recovery(status=status, run=data, missed=lost)


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
