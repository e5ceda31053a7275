"""What subscribers are told when an upstream stream fails, and how the run's end is learnt.

``runcast.upstream_error`` carries ``{"error": {"message", "type": "upstream_error", "code",
"param"}, "reason", "last_status", "run_id", "thread_id"}``; ``reason`` (= ``error.code``) is
``stream_truncated``, ``connect_timeout``/``first_byte_timeout``/``idle_timeout``,
``connection_lost``, ``http_<status>`` (a continuation refused) or ``protocol_error``. The
``error`` member makes the openai SDK raise ``APIError`` for the creator (spec §6.2) instead of
ending its stream silently.

The run's final state is then learnt by polling (after its stream broke off, or after runcast
cancelled it).

``GET /threads/{thread_id}/runs/{run_id}`` (spec §1.2) is polled at the interval the upstream
suggests (``openai-poll-after-ms``, spec §1.1; 1000 ms when absent, as the openai SDK's ``poll()``)
until the run settles: a terminal status or ``requires_action`` (the statuses at which the SDK's
poll helper stops, spec §5). The raw Run bytes are returned so they can be relayed unchanged.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from gateway.errors import (
    StreamTruncated,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from gateway.hub import HubEvent
from gateway.upstream import UpstreamClient
from gateway.upstream.body import path_id
from parsers.assistants import TERMINAL_RUN_STATUSES
from parsers.errors import RemoteProtocolError

__all__ = [
    "SETTLED_STATUSES",
    "UPSTREAM_ERROR_EVENT",
    "poll_settled_run",
    "settled_event",
    "upstream_error_event",
]

log = logging.getLogger("runcast.relay")

UPSTREAM_ERROR_EVENT = "runcast.upstream_error"
SETTLED_STATUSES = TERMINAL_RUN_STATUSES | {"requires_action"}
_DEFAULT_INTERVAL = 1.0
_MIN_INTERVAL = 0.05
_MAX_RUN_BYTES = 8 * 1024 * 1024


class _StatusView(msgspec.Struct):
    status: str = ""


_status_decoder = msgspec.json.Decoder(_StatusView)


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


def _reason(exc: BaseException) -> str:
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
    reason = _reason(exc)
    body = _UpstreamError(
        error=_ErrorBody(message=message, type="upstream_error", code=reason),
        reason=reason,
        last_status=last_status,
        run_id=run_id,
        thread_id=thread_id,
    )
    return HubEvent(UPSTREAM_ERROR_EVENT, _encode(body))


def settled_event(status: str, data: bytes) -> HubEvent:
    """A polled Run relayed unchanged as ``thread.run.<status>``."""
    return HubEvent(f"thread.run.{status}", data)


def _interval(value: str | None) -> float:
    try:
        ms = float(value) if value is not None else _DEFAULT_INTERVAL * 1000
    except ValueError:
        ms = _DEFAULT_INTERVAL * 1000
    return max(ms / 1000.0, _MIN_INTERVAL)


async def poll_settled_run(
    upstream: UpstreamClient,
    thread_id: str,
    run_id: str,
    *,
    within: float,
    api_key: str | None = None,
) -> tuple[str, bytes] | None:
    """``(status, run JSON)`` once the run has settled, or None when ``within`` seconds pass first
    (or the upstream cannot tell)."""
    path = f"/threads/{path_id(thread_id)}/runs/{path_id(run_id)}"
    try:
        async with asyncio.timeout(within):
            while True:
                async with upstream.request("GET", path, api_key=api_key) as response:
                    data = await response.read(limit=_MAX_RUN_BYTES)
                    wait = _interval(response.headers.get("openai-poll-after-ms"))
                    if not response.ok:
                        log.warning("run %s: poll answered HTTP %d", run_id, response.status)
                        return None
                status = _status_decoder.decode(data).status
                if status in SETTLED_STATUSES:
                    return status, data
                await asyncio.sleep(wait)
    except TimeoutError:
        log.warning("run %s: still not settled after %gs of polling", run_id, within)
    except (UpstreamError, RemoteProtocolError, msgspec.DecodeError) as exc:
        log.warning("run %s: polling failed: %s", run_id, exc)
    return None
