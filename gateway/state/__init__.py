"""State that every gateway process of a deployment must share, behind small interfaces.

Each module holds one interface (a ``Protocol`` whose methods are async wherever a network store
would wait) and its in-memory implementation for a single process: ``leases`` (who owns a run: a
lease with a fencing token), ``claims`` (the one-submission-per-action claim and clients'
submissions in flight), ``schedule`` (when runs left at an unanswered action are read),
``threads`` (run -> thread, and response -> conversation, read by auth), ``rounds`` (tool rounds
per run), ``live`` (runs being pumped, for failover) and ``marks`` (runcast's submission of an
action, for failover). A loop polling a store on Redis calls ``gateway.tasks.check_cancelled``
(redis-py may swallow its task's cancellation).
:class:`SharedState` bundles the run lifecycle's stores; :meth:`SharedState.memory` builds the
in-memory set. ``redis`` holds every interface on Redis for several processes and nodes.
"""

from __future__ import annotations

import dataclasses

from .claims import TAKEOVER_TIMEOUT, ActionClaims, Claim, MemoryActionClaims
from .leases import Lease, MemoryRunLeases, RunLeases
from .live import LiveRun, LiveRuns, LiveStream, MemoryLiveRuns
from .marks import MemorySubmissionMarks, SubmissionMark, SubmissionMarks
from .rounds import MemoryToolRounds, RoundState, ToolRounds
from .schedule import ExpiryEntry, ExpirySchedule, MemoryExpirySchedule
from .threads import MemoryRunThreads, RunThreads

__all__ = [
    "TAKEOVER_TIMEOUT",
    "ActionClaims",
    "Claim",
    "ExpiryEntry",
    "ExpirySchedule",
    "Lease",
    "LiveRun",
    "LiveRuns",
    "LiveStream",
    "MemoryActionClaims",
    "MemoryExpirySchedule",
    "MemoryLiveRuns",
    "MemoryRunLeases",
    "MemoryRunThreads",
    "MemorySubmissionMarks",
    "MemoryToolRounds",
    "RoundState",
    "RunLeases",
    "RunThreads",
    "SharedState",
    "SubmissionMark",
    "SubmissionMarks",
    "ToolRounds",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SharedState:
    """The run lifecycle's shared stores (tool rounds belong to tool automation)."""

    leases: RunLeases
    claims: ActionClaims
    schedule: ExpirySchedule
    threads: RunThreads
    conversations: RunThreads
    """response id -> conversation id of the Responses streams that named a conversation."""
    live: LiveRuns = dataclasses.field(default_factory=MemoryLiveRuns)
    """Runs being pumped, for failover (only a shared store lets another process take over)."""
    marks: SubmissionMarks = dataclasses.field(default_factory=MemorySubmissionMarks)
    """Where runcast's submission of each run's current action stands."""
    shared: bool = False
    """True when other processes see these stores (Redis): runs can be taken over."""

    @classmethod
    def memory(cls, *, max_runs: int = 100_000) -> SharedState:
        """One process's stores; ``max_runs`` bounds the run -> thread map and the schedule."""
        return cls(
            leases=MemoryRunLeases(),
            claims=MemoryActionClaims(),
            schedule=MemoryExpirySchedule(max_entries=max_runs),
            threads=MemoryRunThreads(max_runs=max_runs),
            conversations=MemoryRunThreads(max_runs=max_runs),
        )
