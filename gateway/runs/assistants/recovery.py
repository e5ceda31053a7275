"""Learning an Assistants run's end by polling it, after its stream broke off or a cancel.

``GET /threads/{thread_id}/runs/{run_id}`` (spec §1.2) is polled at the interval the upstream
suggests (``openai-poll-after-ms``, spec §1.1; 1000 ms when absent, as the openai SDK's ``poll()``)
until the run settles: a terminal status or ``requires_action`` (the statuses at which the SDK's
poll helper stops, spec §5). Failed polls are retried with backoff until the deadline
(``gateway.runs.polling``), so an upstream that is unreachable for a while does not end the
recovery early. The raw Run bytes are returned so they can be relayed unchanged, once its ``id``
and ``thread_id`` are the polled run's (another run's object is an answer as unreadable as one
that is not JSON: the recovery gives up); a recovery then
lists what the channels missed (``missed.py``).
"""

from __future__ import annotations

import logging

from gateway.upstream import UpstreamClient
from parsers.assistants.signals import ACTION_STATUS, SETTLED_STATUSES
from parsers.errors import DECODE_ERRORS, RemoteProtocolError

from ..missed import FinalIds
from ..polling import Poller
from ..recovery import Recovery
from .missed import missed
from .runs import MAX_RUN_BYTES, run_path, run_status

__all__ = ["poll_settled_run", "recover_run", "settled_run"]

log = logging.getLogger("runcast.relay")

_DEFAULT_INTERVAL = 1.0
_MIN_INTERVAL = 0.05


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
            status = run_status(data, thread_id, run_id)
        except DECODE_ERRORS as exc:
            log.warning("run %s: the polled run is not JSON: %s", run_id, exc)
            return None
        except RemoteProtocolError as exc:
            log.warning("run %s: the polled run is not it: %s", run_id, exc)
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
