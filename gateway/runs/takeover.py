"""Failover: the takeover watcher, and what a node taking a run over reads and reports.

Theory of operation. In Redis mode every node runs one :class:`TakeoverWatcher` (owned by the
relay registry, like the expiry watcher). A relay that owns a run keeps it in the shared
:class:`~gateway.state.LiveRuns` with its lease's expiry (``keeper.py``) and removes it when it
stops pumping it for good. Every third of the lease ttl the watcher lists the runs whose recorded
expiry has passed (their owner stopped renewing: a killed process, a lost network) and tries to
acquire each one's lease *without* take-over: the store hands it to exactly one node, which
starts a relay in recovery mode for the run (``adoption.py``). That relay reads what the run's
channel already holds (:class:`Published`, which its protocol reads from the channel's snapshot in
the shared log with :func:`snapshot_view`; Assistants: ``assistants/published.py``),
polls the upstream run until it settles as a broken stream's recovery does, and publishes
``runcast.recovered`` (``reason: "owner_lost"``), the final messages and steps the channel lacks,
the settled ``thread.run.<status>`` and ``done``; a run at ``requires_action`` is answered with
the tools as its owner would have. A run whose channel already has its terminal status and
``done`` is only closed. A Responses or Chat stream's record (:class:`~gateway.state.LiveStream`)
is handed to the same ``adopt``, which starts a :class:`~gateway.runs.protocols.StreamRelay` in
takeover mode (resumed, reconciled or ended with ``runcast.upstream_lost`` ``owner_lost``; see
``gateway/runs/protocols/relay.py``).

Tools after an owner died mid-action. The owner marks ``submitting`` (with the action's tool call
ids) before it posts the outputs and ``submitted`` once accepted (``gateway.state.marks``). The
taker submits only when the outputs were provably not taken: the run is (still) at
``requires_action`` once the dead owner's lease has lapsed, which a submission the upstream had
accepted would have moved on (so a mark with the same ids was not taken; other ids are a new
action). When the mark says ``submitting`` and the run's state cannot tell (the run read failed
until the recovery deadline, or the run ended ``expired``, ``cancelled`` or ``failed``), it
publishes ``runcast.tool_automation.unknown`` ``{"run_id", "thread_id", "tool_call_ids",
"reason"}`` and follows the run without submitting (:func:`report_unknown_submission`). Handlers
get the ``tool_call_id`` as their idempotency key, so one that ran under the dead owner can
recognise the second call; the taker releases the dead owner's tool round first
(:func:`release_round`), which would otherwise skip the action as answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

from gateway.hub import Broker, HubEvent
from gateway.state import (
    Lease,
    LiveRun,
    LiveRuns,
    RoundState,
    RunLeases,
    SubmissionMark,
    SubmissionMarks,
    ToolRounds,
)
from gateway.tasks import check_cancelled

from .missed import FinalIds

if TYPE_CHECKING:
    from .actions import HeldAction
    from .publisher import RunPublisher
    from .recovery import Recovery

ViewT = TypeVar("ViewT")

__all__ = [
    "OWNER_LOST",
    "UNKNOWN_EVENT",
    "Published",
    "TakeoverWatcher",
    "release_round",
    "report_unknown_submission",
    "snapshot_view",
    "submission_unknown",
    "unknown_event",
]

log = logging.getLogger("runcast.relay")

OWNER_LOST = "owner_lost"
"""The ``reason`` of the ``runcast.recovered`` a taker publishes."""
UNKNOWN_EVENT = "runcast.tool_automation.unknown"

_MAX_TAKEN_PER_TICK = 100

_SAYS_SUBMITTED = frozenset({"completed", "incomplete"})
"""Statuses a run reaches only past its action: the outputs were taken."""


class _Wrapped(msgspec.Struct, Generic[ViewT]):
    snapshot: ViewT | None = None


async def snapshot_view(broker: Broker, channel: str, view: type[ViewT]) -> ViewT | None:
    """The snapshot ``channel`` holds in the shared log, read as ``view`` (only the fields a
    taker needs); None when there is none or it does not decode (logged)."""
    snapshot = await broker.snapshot(channel)
    if snapshot is None:
        return None
    try:
        return msgspec.json.decode(snapshot.to_json(), type=_Wrapped[view]).snapshot  # type: ignore[valid-type]
    except msgspec.DecodeError as exc:
        log.warning("%s: its snapshot does not decode: %s", channel, exc)
        return None


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """What a run's channel already holds (read from its snapshot)."""

    finals: FinalIds
    status: str | None
    """The last run status published."""
    done: bool
    """Whether ``done`` followed it."""
    action_ids: tuple[str, ...]
    """The tool call ids of the ``requires_action`` published last (empty if none)."""


def submission_unknown(mark: SubmissionMark | None, status: str | None) -> bool:
    """Whether a dead owner's submission may have been taken without the run saying so:
    ``status`` is the settled status found (None: the run could not be read)."""
    if mark is None or mark.state != "submitting":
        return False
    return status is None or (status != "requires_action" and status not in _SAYS_SUBMITTED)


def unknown_event(
    *, run_id: str, thread_id: str, tool_call_ids: tuple[str, ...], reason: str
) -> HubEvent:
    body = {
        "run_id": run_id,
        "thread_id": thread_id,
        "tool_call_ids": list(tool_call_ids),
        "reason": reason,
    }
    return HubEvent(UNKNOWN_EVENT, msgspec.json.encode(body))


async def report_unknown_submission(
    marks: SubmissionMarks,
    out: RunPublisher,
    *,
    run_id: str,
    thread_id: str,
    recovery: Recovery | None,
) -> None:
    """Report a dead owner's submission the run's state cannot settle (module docstring);
    ``recovery``: the run found settled (None: it could not be read)."""
    mark = await marks.get(run_id)
    status = None if recovery is None else recovery.status
    if mark is None or not submission_unknown(mark, status):
        return
    reason = (
        "the run could not be read"
        if status is None
        else f"the run ended {status} after the outputs were being submitted"
    )
    log.warning("run %s: unknown whether the tool outputs were submitted: %s", run_id, reason)
    event = unknown_event(
        run_id=run_id, thread_id=thread_id, tool_call_ids=mark.call_ids, reason=reason
    )
    await out.emit(event)


async def release_round(rounds: ToolRounds | None, action: HeldAction) -> None:
    """A dead owner may have been answering this action (tool rounds say so, and would skip
    it): the run still waits at it, so it is answered again."""
    ids = action.call_ids
    if rounds is None or not ids:
        return
    state = await rounds.get(action.run_id)
    if state.last_action == ids:
        released = RoundState(rounds=state.rounds, last_action=None)
        await rounds.swap(action.run_id, state, released)


class TakeoverWatcher:
    """Takes over the runs whose owner's lease lapsed (module docstring); ``adopt`` starts the
    recovery relay for a run this node won."""

    def __init__(
        self,
        live: LiveRuns,
        leases: RunLeases,
        adopt: Callable[[LiveRun, Lease], None],
        *,
        ttl: float,
        owner: str,
    ) -> None:
        self._live = live
        self._leases = leases
        self._adopt = adopt
        self._ttl = ttl
        self._owner = owner
        self._task: asyncio.Task[None] | None = None
        self.taken = 0
        """Runs this node took over."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name="runcast-takeover-watcher"
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def tick(self) -> int:
        """Look once; the number of runs taken over."""
        taken = 0
        for run in await self._live.expired(time.time(), limit=_MAX_TAKEN_PER_TICK):
            lease = await self._leases.acquire(run.run_id, self._owner, ttl=self._ttl)
            if lease is None:
                continue  # still held (renewed meanwhile), or another node won it
            log.warning("run %s: its owner stopped; taking it over", run.run_id)
            self._adopt(run, lease)
            taken += 1
        self.taken += taken
        return taken

    async def _watch(self) -> None:
        interval = self._ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception as exc:  # the store unreachable: look again next time
                log.warning("takeover watcher: %s", exc)
            check_cancelled()
