"""What an Assistants run's channel already holds, read by a node taking the run over.

The run channel's snapshot (``parsers.accumulate``'s, folded by ``reducer.py``) is read from the
shared log through :func:`~gateway.runs.takeover.snapshot_view`, only the fields a taker needs:
the final messages and steps (which a recovery does not publish again), the last run status,
whether ``done`` followed it, and the tool call ids of the ``requires_action`` published last.
"""

from __future__ import annotations

import msgspec

from gateway.hub import Broker
from parsers.assistants.signals import FINAL_MESSAGE_STATUSES, FINAL_STEP_STATUSES

from ..channels import run_channel
from ..missed import FinalIds
from ..takeover import Published, snapshot_view

__all__ = ["published_state"]


class _Item(msgspec.Struct):
    id: str = ""
    status: str | None = None


class _Call(msgspec.Struct):
    id: str = ""


class _Outputs(msgspec.Struct):
    tool_calls: list[_Call] = []


class _Action(msgspec.Struct):
    submit_tool_outputs: _Outputs | None = None


class _Run(msgspec.Struct):
    required_action: _Action | None = None


class _Snapshot(msgspec.Struct):
    status: str | None = None
    done: bool = False
    run: _Run | None = None
    messages: list[_Item] = []
    steps: list[_Item] = []


def _call_ids(required_action: _Action | None) -> tuple[str, ...]:
    outputs = required_action.submit_tool_outputs if required_action is not None else None
    return tuple(call.id for call in outputs.tool_calls) if outputs is not None else ()


async def published_state(broker: Broker, run_id: str) -> Published:
    """What ``run:{run_id}`` holds: its final messages and steps, last status and ``done``."""
    finals = FinalIds()
    view = await snapshot_view(broker, run_channel(run_id), _Snapshot)
    if view is None:
        return Published(finals=finals, status=None, done=False, action_ids=())
    finals.messages.update(m.id for m in view.messages if m.status in FINAL_MESSAGE_STATUSES)
    finals.steps.update(s.id for s in view.steps if s.status in FINAL_STEP_STATUSES)
    ids = _call_ids(view.run.required_action) if view.run is not None else ()
    return Published(finals=finals, status=view.status, done=view.done, action_ids=ids)
