"""What a run relay does with a held ``requires_action``: :class:`ActionAnswerer`.

The relay pumps segments (``relay.py``); between two of them, when it holds a
:class:`~gateway.runs.pending.PendingAction`, it hands it here. :meth:`ActionAnswerer.answer`
asks the :class:`~gateway.runs.actions.ActionHandler` and either returns the submission's stream
(``Submit``: posted once, ``stream: true``, spec §1.3) for the relay to splice in, or ends the
segment itself:

- superseded by a client's own submission through runcast: ``runcast.tool_automation.superseded``,
  then the segment closes as the upstream sent it (``pending.py`` explains the takeover);
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

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.tools import events as tool_events
from gateway.upstream import RunStream, UpstreamClient
from parsers.assistants import TERMINAL_RUN_STATUSES
from parsers.errors import RemoteProtocolError

from .actions import ActionHandler, ActionOptions, Cancel, Skip, Submit
from .pending import DONE, ActionClaims, PendingAction, fetch_run, http_error_message
from .publisher import RunPublisher
from .recovery import settled_event

__all__ = ["ActionAnswerer"]

log = logging.getLogger("runcast.relay")

SUPERSEDED = "a client submitted the tool outputs itself"
TOO_LATE = "tool outputs were ready only after the action expired"


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


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
        "_options",
        "_out",
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
        claims: ActionClaims,
        out: RunPublisher,
        api_key: str | None,
        headers: Mapping[str, str],
        settle: Callable[[], Awaitable[None]],
        scrub: Callable[[str], str],
    ) -> None:
        self._handler = handler
        self._options = options
        self._upstream = upstream
        self._claims = claims
        self._out = out
        self._api_key = api_key
        self._headers = headers
        self._settle = settle
        self._scrub = scrub

    async def emit(self, name: str, data: bytes) -> None:
        """Publish a ``runcast.*`` event (the handler's ``emit``)."""
        await self._out.emit(HubEvent(name, data), to_creator=False)
        if self._options.events_to_creator:
            creator_event = HubEvent(name, tool_events.creator_view(data))
            self._out.to_creator(creator_event, self._out.run_seq())

    async def answer(self, pending: PendingAction, thread_id: str) -> RunStream | None:
        """The submission's stream, or None once the segment has been ended here."""
        run = pending.run
        outcome = await pending.decide(self._handler, self.emit)
        if outcome is None or pending.superseded:
            event = tool_events.automation_superseded(
                run_id=run.id, thread_id=thread_id, reason=SUPERSEDED
            )
            await self.close(pending, event)
            return None
        if isinstance(outcome, Submit) and _past(outcome.not_after):
            await self.emit(
                *tool_events.automation_cancelled(
                    run_id=run.id, thread_id=thread_id, reason=TOO_LATE
                )
            )
            outcome = Cancel(reason=TOO_LATE)
        if isinstance(outcome, Submit):
            # The claim stays: the continuation's first event or a refusal resolves it.
            return self._upstream.stream_submit_tool_outputs(
                thread_id, run.id, outcome.as_dicts(), api_key=self._api_key, headers=self._headers
            )
        if isinstance(outcome, Skip):
            await self.close(pending)
            return None
        try:
            await self._upstream.cancel_run(thread_id, run.id, api_key=self._api_key)
        except (UpstreamError, RemoteProtocolError) as exc:
            log.warning("run %s: cancel failed: %s", run.id, exc)
        try:
            await self._settle()
            await self._out.emit(DONE)
        finally:
            self._claims.release(pending.claim)
        return None

    async def close(self, pending: PendingAction, event: tuple[str, bytes] | None = None) -> None:
        """Report ``event`` (if any) and end the segment as the upstream sent it."""
        try:
            if event is not None:
                await self.emit(*event)
            await pending.close(self._out)
        finally:
            self._claims.release(pending.claim)

    async def rejected(
        self, pending: PendingAction, exc: UpstreamHTTPError, thread_id: str
    ) -> str | None:
        """Report the refused submission and end the segment; the run's terminal status if the
        upstream says it has one."""
        run = pending.run
        if pending.superseded:
            # A client's submission through runcast won the race, and its relay is waiting.
            event = tool_events.automation_superseded(
                run_id=run.id, thread_id=thread_id, reason=SUPERSEDED
            )
            await self.close(pending, event)
            return None
        reason = self._scrub(http_error_message(exc))
        log.warning("run %s: tool outputs refused (HTTP %d): %s", run.id, exc.status, reason)
        try:
            await self.emit(
                *tool_events.automation_rejected(
                    run_id=run.id, thread_id=thread_id, reason=reason, status=exc.status
                )
            )
            if self._claims.incoming(run.id):
                # A client's submission through runcast is being answered: if it was accepted,
                # its relay carries the run on to its end, terminal status included.
                found = None
            else:
                found = await fetch_run(self._upstream, thread_id, run.id, api_key=self._api_key)
            if found is None or found[0] not in TERMINAL_RUN_STATUSES:
                # Someone else's submission continues the run (through runcast or not).
                await pending.close(self._out)
                return None
            status, data = found
            await self._out.emit(settled_event(status, data))
            await pending.close(self._out, show=False)
            return status
        finally:
            self._claims.release(pending.claim)
