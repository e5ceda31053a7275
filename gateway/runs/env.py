"""RelayEnv: what every run relay of a gateway shares, built once by the registry.

The broker and upstream client, the run protocol, the tool automation's handler and options, the
recovery deadline, and the stores shared between gateway processes (action claims, leases, live
runs, submission marks, tool rounds); each :class:`~gateway.runs.relay.RunRelay` reads them and
keeps none of them to itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.hub import Broker
from gateway.metrics import Metrics
from gateway.state import (
    ActionClaims,
    LiveRuns,
    MemoryActionClaims,
    MemoryLiveRuns,
    MemoryRunLeases,
    MemorySubmissionMarks,
    RunLeases,
    SubmissionMarks,
    ToolRounds,
)
from gateway.upstream import UpstreamClient

from .actions import ActionHandler, ActionOptions
from .assistants.protocol import ASSISTANTS
from .expiry import ActionExpiry
from .protocol import RunProtocol

__all__ = ["LEASE_TTL", "RelayEnv"]

LEASE_TTL = 10.0
"""How long a relay's hold on its run lasts unless renewed (``--lease-ttl``); its keeper renews it
every third of it, events or not (``keeper.py``)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RelayEnv:
    """What every relay of a gateway shares (built once by the registry)."""

    broker: Broker
    upstream: UpstreamClient
    protocol: RunProtocol[Any] = ASSISTANTS
    """The upstream API the runs speak (events, continuation, recovery); its run objects pass
    through the relay unread."""
    action_handler: ActionHandler | None = None
    action_options: ActionOptions = dataclasses.field(default_factory=ActionOptions)
    recovery_timeout: float = 30.0
    on_run: Callable[[str, str | None], Awaitable[None]] | None = None
    """Called with (run id, thread id) when a relay learns its run id."""
    claims: ActionClaims = dataclasses.field(default_factory=MemoryActionClaims)
    """Which relay holds each run's pending action (see ``answering.py``)."""
    leases: RunLeases = dataclasses.field(default_factory=MemoryRunLeases)
    """Which relay owns each run: the one pumping it (a continuation takes it over)."""
    lease_ttl: float = LEASE_TTL
    live: LiveRuns = dataclasses.field(default_factory=MemoryLiveRuns)
    """The runs being pumped, which other nodes take over when their lease lapses."""
    marks: SubmissionMarks = dataclasses.field(default_factory=MemorySubmissionMarks)
    """Where runcast's submission of each run's action stands (``takeover.py``)."""
    rounds: ToolRounds | None = None
    """The tool automation's rounds, shared: a taker releases the action a dead owner was
    answering there, so that its handlers run again (None: nothing to release)."""
    expiry: ActionExpiry | None = None
    """Where a run left at an unanswered ``requires_action`` is watched until it expires."""
    metrics: Metrics | None = None
    """Where each relay's :class:`~gateway.metrics.RunMeter` records (None: nothing recorded)."""
