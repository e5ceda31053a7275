"""Reading an Assistants run from the upstream, and the events runcast writes in its name.

One place builds ``GET /threads/{thread_id}/runs/{run_id}`` (spec §1.2) and decodes the status
out of it (:func:`run_path`, :func:`run_status`, :func:`fetch_run`), one place synthesizes the
end-of-segment marker (:data:`DONE`) and the settled run event (:func:`settled_event`), and one
describes a run at ``requires_action`` to the generic code (:func:`held_action`).
"""

from __future__ import annotations

import logging

import msgspec

from gateway.errors import UpstreamError
from gateway.hub import HubEvent
from gateway.upstream import UpstreamClient
from gateway.upstream.body import path_id
from parsers.assistants import Run
from parsers.errors import RemoteProtocolError

from ..actions import HeldAction

__all__ = [
    "DONE",
    "MAX_RUN_BYTES",
    "fetch_run",
    "held_action",
    "run_path",
    "run_status",
    "settled_event",
]

log = logging.getLogger("runcast.relay")

DONE = HubEvent("done", b"[DONE]")
"""The end of one upstream response (spec §2.1): every segment on the channels ends with it."""

MAX_RUN_BYTES = 8 * 1024 * 1024
"""Bound on one Run object read from the upstream."""


class _Status(msgspec.Struct):
    status: str = ""
    id: str | None = None
    thread_id: str | None = None


_status_decoder = msgspec.json.Decoder(_Status)


def run_path(thread_id: str, run_id: str) -> str:
    return f"/threads/{path_id(thread_id)}/runs/{path_id(run_id)}"


def run_status(data: bytes, thread_id: str, run_id: str) -> str:
    """The ``status`` of the Run JSON body read for ``run_id`` of ``thread_id``;
    :class:`msgspec.DecodeError` when it is not JSON, :class:`RemoteProtocolError` when it is
    another run's (or thread's): relayed as this run's state, it would publish another run on
    this run's channels."""
    run = _status_decoder.decode(data)
    if run.id != run_id or run.thread_id != thread_id:
        raise RemoteProtocolError(
            f"asked for run {run_id} of thread {thread_id}, the upstream answered with run "
            f"{run.id} of thread {run.thread_id}"
        )
    return run.status


def settled_event(status: str, data: bytes) -> HubEvent:
    """A polled Run relayed unchanged as ``thread.run.<status>``."""
    return HubEvent(f"thread.run.{status}", data)


def held_action(run: Run) -> HeldAction:
    """The run's ``required_action`` as the relay, the answerer and the tools read it: every
    tool call's id, and the calls a handler may answer (only a ``submit_tool_outputs`` action)."""
    action = run.required_action
    tool_calls = action.submit_tool_outputs.tool_calls if action is not None else []
    answerable = action is not None and action.type == "submit_tool_outputs"
    return HeldAction(
        run_id=run.id,
        thread_id=run.thread_id,
        expires_at=run.expires_at,
        call_ids=tuple(call.id for call in tool_calls),
        calls=tuple(tool_calls) if answerable else (),
    )


async def fetch_run(
    upstream: UpstreamClient, thread_id: str, run_id: str, *, api_key: str | None = None
) -> tuple[str, bytes] | None:
    """``(status, run JSON)`` from one ``GET .../runs/{run_id}``; None if it cannot be learnt."""
    try:
        async with upstream.request(
            "GET", run_path(thread_id, run_id), api_key=api_key
        ) as response:
            if not response.ok:
                return None
            data = await response.read(limit=MAX_RUN_BYTES)
        return run_status(data, thread_id, run_id), data
    except (UpstreamError, RemoteProtocolError, msgspec.DecodeError) as exc:
        log.warning("run %s: could not read its status: %s", run_id, exc)
        return None
