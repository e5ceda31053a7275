"""A ``requires_action`` runcast answers itself, from claim to release: :class:`ActionAnswerer`.

This module is the one owner of an action's claim: :meth:`ActionAnswerer.hold` claims the run
and publishes the event, and every way out (the continuation accepted, the segment closed, the
outputs refused, the run cancelled, the relay ending or recovering) releases it here.

Holding. With an :class:`~gateway.runs.actions.ActionHandler`, a relay that reaches
``thread.run.requires_action`` keeps the segment open: the upstream's ``done`` is held (and the
event itself possibly hidden from the creator) in a :class:`PendingAction` until the outcome is
known. Then exactly one of these ends it:

- the relay's own submission is accepted (its continuation's first event arrives,
  :meth:`ActionAnswerer.accepted`): the held ``done`` is dropped, so everyone sees one continuous
  run;
- the segment is closed as the upstream sent it: the creator gets the hidden
  ``requires_action`` back, then ``done`` goes to everyone.

Spec §5: one POST answers an action and the upstream accepts only the first. A client may answer
it itself through runcast (``POST .../submit_tool_outputs``, streamed) while runcast is still
running the handlers; the relay started for that submission continues the same channels. Its
continuation must not reach the channels before the first relay has ended its segment, and
runcast must not submit as well. So the action is *claimed* (:class:`~gateway.state.ActionClaims`,
shared) from ``requires_action`` on, and a submission's relay, once the upstream has accepted it,
*takes it over*: the claim is marked superseded, the handlers stop, ``superseded`` is reported and
the segment closed, then the claim is released, which the taker awaits (bounded) before
publishing. While a client's submission is in flight, a relay whose own submission was refused
leaves the run's end to that submission's relay instead of reporting it.

Answering. :meth:`ActionAnswerer.answer` asks the handler and either returns the submission's
stream (``Submit``: posted once, ``stream: true``, spec §1.3) for the relay to splice in, or ends
the segment itself:
- superseded by a client's own submission through runcast: ``runcast.tool_automation.superseded``,
  then the segment closes as the upstream sent it;
- ``Skip``: the segment closes as the upstream sent it and the client answers the action;
- ``Cancel``, or outputs ready only after the action's ``expires_at`` (spec §5: too late, and the
  run expires anyway; reported as ``runcast.tool_automation.cancelled``): the run is cancelled
  upstream and its final status published.

:meth:`ActionAnswerer.rejected` handles an HTTP 400 to runcast's submission (the run no longer
waits: a client answered directly at the upstream, or it expired): it reports
``runcast.tool_automation.rejected``, publishes the run's terminal status when it has one, and
closes the segment; the run's channel stays open for whoever continues the run.

``runcast.*`` events always go to the channels, and to the creator only with
``ActionOptions.events_to_creator`` (through ``events.creator_view``, which the openai SDK accepts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.state import ActionClaims, Claim, SubmissionMarks
from gateway.tools import events as tool_events
from gateway.upstream import RunStream, UpstreamClient
from parsers.errors import RemoteProtocolError

from .actions import (
    ActionHandler,
    ActionOptions,
    ActionOutcome,
    Cancel,
    Emit,
    HeldAction,
    Skip,
    Submit,
)
from .protocol import RunProtocol
from .publisher import RunPublisher

__all__ = ["ActionAnswerer", "PendingAction", "http_error_message"]

log = logging.getLogger("runcast.relay")

SUPERSEDED = "a client submitted the tool outputs itself"
TOO_LATE = "tool outputs were ready only after the action expired"


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


@dataclasses.dataclass(slots=True, kw_only=True)
class PendingAction:
    """One ``requires_action`` being answered by runcast (module docstring)."""

    action: HeldAction
    """The run's action, as its protocol describes it."""
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
        answer = asyncio.create_task(handler.run_action(self.action, emit))
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
            log.error("run %s: action handler failed", self.action.run_id, exc_info=exc)
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


class ActionAnswerer:
    """Answers one relay's pending actions (one per relay that has an action handler).

    ``settle`` publishes the run's final status to the channels and the creator once it has
    settled (the relay's bounded poll); ``scrub`` removes the upstream key from error texts.
    """

    __slots__ = (
        "_api_key",
        "_claims",
        "_handler",
        "_headers",
        "_marks",
        "_options",
        "_out",
        "_protocol",
        "_scrub",
        "_settle",
        "_upstream",
    )

    def __init__(
        self,
        handler: ActionHandler,
        *,
        options: ActionOptions,
        upstream: UpstreamClient,
        protocol: RunProtocol[Any],
        claims: ActionClaims,
        marks: SubmissionMarks,
        out: RunPublisher,
        api_key: str | None,
        headers: Mapping[str, str],
        settle: Callable[[], Awaitable[None]],
        scrub: Callable[[str], str],
    ) -> None:
        self._handler = handler
        self._options = options
        self._upstream = upstream
        self._protocol = protocol
        self._claims = claims
        self._marks = marks
        self._out = out
        self._api_key = api_key
        self._headers = headers
        self._settle = settle
        self._scrub = scrub

    async def hold(
        self, action: HeldAction, event: HubEvent, *, publish: bool = True
    ) -> PendingAction:
        """Claim the run's ``action``, then publish its ``requires_action`` ``event`` (hidden from
        the creator when the handler answers it, unless ``show_requires_action``);
        ``publish=False``: the channels have it already (a run taken over)."""
        # Claimed before it is published: a client reacting to it must find the claim.
        pending = PendingAction(action=action, claim=await self._claims.claim(action.run_id))
        if not publish:
            return pending
        hide = not self._options.show_requires_action and self._handler.handles(action)
        try:
            seq = await self._out.emit(event, to_creator=not hide)
        except BaseException:
            await self._claims.release(pending.claim)
            raise
        pending.hidden = (event, seq) if hide else None
        return pending

    async def accepted(self, pending: PendingAction) -> None:
        """runcast's outputs were accepted (the continuation's first event arrived): the held
        ``done`` is never passed on, and the run goes on."""
        await self._marks.mark(pending.action.run_id, pending.action.call_ids, "submitted")
        await self._claims.release(pending.claim)

    async def drop(self, pending: PendingAction) -> None:
        """The relay ends, or a recovery found the run past this action: let the claim go."""
        await self._claims.release(pending.claim)

    async def emit(self, name: str, data: bytes) -> None:
        """Publish a ``runcast.*`` event (the handler's ``emit``)."""
        await self._out.emit(HubEvent(name, data), to_creator=False)
        if self._options.events_to_creator:
            creator_event = HubEvent(name, tool_events.creator_view(data))
            self._out.to_creator(creator_event, self._out.run_seq())

    async def answer(self, pending: PendingAction, thread_id: str) -> RunStream | None:
        """The submission's stream, or None once the segment has been ended here."""
        action = pending.action
        outcome = await pending.decide(self._handler, self.emit)
        if outcome is None or pending.superseded:
            event = tool_events.automation_superseded(
                run_id=action.run_id, thread_id=thread_id, reason=SUPERSEDED
            )
            await self.close(pending, event)
            return None
        if isinstance(outcome, Submit) and _past(outcome.not_after):
            await self.emit(
                *tool_events.automation_cancelled(
                    run_id=action.run_id, thread_id=thread_id, reason=TOO_LATE
                )
            )
            outcome = Cancel(reason=TOO_LATE)
        if isinstance(outcome, Submit):
            # Marked before the POST: a node taking the run over if this one dies must know
            # the outputs may have been taken (``takeover.py``).
            await self._marks.mark(action.run_id, action.call_ids, "submitting")
            # The claim stays: the continuation's first event or a refusal resolves it.
            return self._protocol.continue_run(
                self._upstream,
                thread_id,
                action.run_id,
                outcome.as_dicts(),
                api_key=self._api_key,
                headers=self._headers,
            )
        if isinstance(outcome, Skip):
            await self.close(pending)
            return None
        try:
            await self._protocol.cancel(
                self._upstream, thread_id, action.run_id, api_key=self._api_key
            )
        except (UpstreamError, RemoteProtocolError) as exc:
            log.warning("run %s: cancel failed: %s", action.run_id, exc)
        try:
            await self._settle()
            await self._out.emit(self._protocol.end_of_segment)
        finally:
            await self._claims.release(pending.claim)
        return None

    async def close(self, pending: PendingAction, event: tuple[str, bytes] | None = None) -> None:
        """Report ``event`` (if any) and end the segment as the upstream sent it."""
        try:
            if event is not None:
                await self.emit(*event)
            await pending.close(self._out, self._protocol.end_of_segment)
        finally:
            await self._claims.release(pending.claim)

    async def rejected(
        self, pending: PendingAction, exc: UpstreamHTTPError, thread_id: str
    ) -> str | None:
        """Report the refused submission and end the segment; the run's terminal status if the
        upstream says it has one."""
        action = pending.action
        if pending.superseded:
            # A client's submission through runcast won the race, and its relay is waiting.
            event = tool_events.automation_superseded(
                run_id=action.run_id, thread_id=thread_id, reason=SUPERSEDED
            )
            await self.close(pending, event)
            return None
        reason = self._scrub(http_error_message(exc))
        log.warning("run %s: tool outputs refused (HTTP %d): %s", action.run_id, exc.status, reason)
        try:
            await self.emit(
                *tool_events.automation_rejected(
                    run_id=action.run_id, thread_id=thread_id, reason=reason, status=exc.status
                )
            )
            if await self._claims.incoming(action.run_id):
                # A client's submission through runcast is being answered: if it was accepted,
                # its relay carries the run on to its end, terminal status included.
                found = None
            else:
                found = await self._protocol.fetch_run(
                    self._upstream, thread_id, action.run_id, api_key=self._api_key
                )
            if found is None or found[0] not in self._protocol.terminal_statuses:
                # Someone else's submission continues the run (through runcast or not).
                await pending.close(self._out, self._protocol.end_of_segment)
                return None
            status, data = found
            await self._out.emit(self._protocol.settled_event(status, data))
            await pending.close(self._out, self._protocol.end_of_segment, show=False)
            return status
        finally:
            await self._claims.release(pending.claim)
