"""The seam between a run relay and whatever answers ``requires_action`` by itself.

When a relayed stream reaches ``thread.run.requires_action`` and an :class:`ActionHandler` is
configured, the relay asks it what to do (``gateway.tools.ToolAutomation`` is the real one):

- :class:`~gateway.tools.Submit`: the relay posts the outputs once with ``stream: true`` and
  splices the continuation into the same channels and the creator's still-open response; the
  upstream's intermediate ``done`` is not passed on, so everyone sees one continuous run.
- :class:`~gateway.tools.Skip`: the relay passes ``requires_action`` (if it held it back from the
  creator) and the ``done`` on, and the client submits as usual.
- :class:`~gateway.tools.Cancel`: the relay cancels the run upstream and reports its final status.

:class:`ActionOptions` says what the creator's OpenAI-format response shows of this.

The handler never sees the protocol's run object: the run's protocol describes the held action
once, as a :class:`HeldAction` (``RunProtocol.held_action``), and that view is what the handler,
the answerer and the relay read.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import msgspec

from gateway.tools.events import Emit
from gateway.tools.executor import PendingCall
from gateway.tools.outcome import ActionOutcome, Cancel, Skip, Submit

__all__ = [
    "ActionHandler",
    "ActionOptions",
    "ActionOutcome",
    "Cancel",
    "Emit",
    "HeldAction",
    "Skip",
    "Submit",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeldAction:
    """A run held at an action, as its protocol describes it (built once per action)."""

    run_id: str
    thread_id: str
    """The run's thread (its group: empty when the protocol has none)."""
    expires_at: int | None
    """Unix time after which the upstream refuses the outputs (None: no deadline)."""
    call_ids: tuple[str, ...]
    """The ids of every tool call the action lists (what a submission answers)."""
    calls: tuple[PendingCall, ...]
    """The calls a handler may answer (empty when the action is not one it can answer)."""


class ActionHandler(Protocol):
    """Answers ``submit_tool_outputs`` actions (``gateway.tools.ToolAutomation`` implements it)."""

    def handles(self, action: HeldAction) -> bool:
        """Whether :meth:`run_action` would answer this run's action (cheap, synchronous)."""
        ...

    async def run_action(self, action: HeldAction, emit: Emit | None = None) -> ActionOutcome:
        """Decide and, for ``Submit``, produce the outputs. ``emit`` publishes ``runcast.*``
        visibility events (name, JSON bytes) to the run's subscriber channels."""
        ...

    async def forget(self, run_id: str) -> None:
        """The run reached a terminal status; per-run state may go."""
        ...


class ActionOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the creator's response shows of an action runcast answers itself.

    ``show_requires_action`` False (default) hides a ``requires_action`` that the handler claims,
    so an app that also submits on its own does not race runcast. ``events_to_creator`` also puts
    the handler's ``runcast.*`` events into the creator's response (subscribers always get them).
    """

    show_requires_action: bool = False
    events_to_creator: bool = False
