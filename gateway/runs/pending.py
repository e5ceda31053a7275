"""A ``requires_action`` a relay holds while runcast answers it, and who may continue the run.

Theory of operation. With an :class:`~gateway.runs.actions.ActionHandler`, a relay that reaches
``thread.run.requires_action`` keeps the segment open: the upstream's ``done`` is held (and the
event itself possibly hidden from the creator) in a :class:`PendingAction` until the outcome is
known. Then exactly one of these ends it:

- the relay's own submission is accepted (its continuation's first event arrives): the held
  ``done`` is dropped, so everyone sees one continuous run;
- the segment is closed as the upstream sent it (:meth:`PendingAction.close`): the creator gets
  the hidden ``requires_action`` back, then ``done`` goes to everyone.

Spec §5: one POST answers an action and the upstream accepts only the first. A client may answer
it itself through runcast (``POST .../submit_tool_outputs``, streamed) while runcast is still
running the handlers; the relay started for that submission continues the same channels. Its
continuation must not reach the channels before the first relay has ended its segment (the
channels would show the continuation before the first segment's ``done``), and runcast must not
submit as well. So the first relay *claims* the run (:class:`~gateway.state.ActionClaims`, shared) from
``requires_action`` on, and a submission's relay, once the upstream has accepted it, *takes it
over*: the claim is marked superseded, the first relay stops its handlers, reports it and closes
its segment, then releases the claim, which the taker awaits (bounded) before publishing. While a
client's submission is in flight (:meth:`~gateway.state.ActionClaims.incoming`), a first relay whose own
submission was refused leaves the run's end to that submission's relay instead of reporting it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from gateway.errors import UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.state import Claim
from parsers.assistants import Run

from .actions import ActionHandler, ActionOutcome, Emit, Skip
from .publisher import RunPublisher

__all__ = ["PendingAction", "http_error_message"]

log = logging.getLogger("runcast.relay")


@dataclasses.dataclass(slots=True, kw_only=True)
class PendingAction:
    """One ``requires_action`` being answered by runcast (module docstring)."""

    run: Run
    claim: Claim
    hidden: tuple[HubEvent, int | None] | None = None
    """The ``requires_action`` event kept from the creator, with its run seq."""
    done: HubEvent | None = None
    """The upstream's ``done`` after it, held back."""

    @property
    def superseded(self) -> bool:
        return self.claim.superseded

    async def decide(self, handler: ActionHandler, emit: Emit) -> ActionOutcome | None:
        """The handler's outcome, or None when a client's submission superseded it first.

        The handler runs as a child task so that a takeover can stop it; a sync tool handler
        already running in a worker thread finishes there, its result unused.
        """
        if self.superseded:
            return None
        answer = asyncio.create_task(handler.run_action(self.run, emit))
        stop = asyncio.create_task(self.claim.wait_superseded())
        try:
            await asyncio.wait((answer, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not answer.done():
                answer.cancel()
            # Both are owned here: neither may outlive this call.
            await asyncio.wait((answer, stop))
        if answer.cancelled():
            return None
        exc = answer.exception()
        if exc is not None:
            # A broken handler must not leave the run hanging: the client gets the action.
            log.error("run %s: action handler failed", self.run.id, exc_info=exc)
            return Skip(reason=f"the action handler failed: {exc!r}")
        return answer.result()

    async def close(self, out: RunPublisher, end: HubEvent, *, show: bool = True) -> None:
        """End the segment as the upstream did (with its held ``done``, else ``end``); ``show``
        gives the creator the hidden event."""
        if show and self.hidden is not None:
            out.to_creator(*self.hidden)
        await out.emit(self.done or end)


def http_error_message(exc: UpstreamHTTPError) -> str:
    """The ``error.message`` of an upstream error body (spec §1.5), else a generic text."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return f"HTTP {exc.status}"
