"""Graceful drain: what the gateway does between SIGTERM/SIGINT and stopping.

1. :meth:`Drain.begin`: new runs (streamed run-starting calls) and new subscriptions are refused
   with 503 ``shutting_down`` (retryable: another node takes them). Outputs submitted for a run
   already running are still relayed, so that run can finish.
2. Running relays are waited for, up to ``drain_timeout`` (a second signal cuts the wait short).
3. Then the server stops (``app.on_shutdown``), ending every remaining stream explicitly: the
   creator of a run still going gets ``runcast.shutdown`` with an ``error`` member the openai SDK
   raises on (``creator.py``); SSE subscribers get ``runcast.shutdown`` with a ``retry:`` hint,
   WebSocket subscribers that notice and close code 1012 (``gateway.hub.transports``).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.runs.registry import RelayRegistry

from .errors import RequestError

__all__ = ["Drain", "drain", "shutting_down"]

log = logging.getLogger("runcast")


class Drain:
    """Whether the gateway is draining; read by the endpoints that start runs and subscriptions."""

    __slots__ = ("_draining",)

    def __init__(self) -> None:
        self._draining = False

    @property
    def draining(self) -> bool:
        return self._draining

    def begin(self) -> None:
        self._draining = True

    def check(self) -> None:
        """Raise the 503 a new run or subscription gets while draining."""
        if self._draining:
            raise shutting_down()


def shutting_down() -> RequestError:
    # Retryable, like the hub's own 503 to subscribers once it has stopped.
    return RequestError(503, "runcast is shutting down", code="shutting_down")


async def drain(
    state: Drain, relays: RelayRegistry, within: float, *, cut_short: asyncio.Event
) -> None:
    """Refuse new work, then wait for the running relays: ``within`` seconds at most, or until
    ``cut_short`` is set (a second signal)."""
    state.begin()
    active = relays.statistics().active
    if not active:
        return
    log.info("draining: waiting up to %gs for %d running run(s)", within, active)
    idle = asyncio.create_task(relays.wait_idle(), name="runcast-drain")
    interrupted = asyncio.create_task(cut_short.wait(), name="runcast-drain-interrupt")
    try:
        await asyncio.wait([idle, interrupted], timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (idle, interrupted):
            task.cancel()
        await asyncio.wait([idle, interrupted])
    left = relays.statistics().active
    if left:
        log.info("drain over: ending %d run(s) still going", left)
    else:
        log.info("drained: every run finished")
