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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from gateway.tools.events import Emit
from gateway.tools.outcome import ActionOutcome, Cancel, Skip, Submit

if TYPE_CHECKING:
    from parsers.assistants import Run

__all__ = ["ActionHandler", "ActionOptions", "ActionOutcome", "Cancel", "Emit", "Skip", "Submit"]


class ActionHandler(Protocol):
    """Answers ``submit_tool_outputs`` actions (``gateway.tools.ToolAutomation`` implements it)."""

    def handles(self, run: Run) -> bool:
        """Whether :meth:`run_action` would answer this run's action (cheap, synchronous)."""
        ...

    async def run_action(self, run: Run, emit: Emit | None = None) -> ActionOutcome:
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
