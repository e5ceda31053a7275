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
submit as well. So the first relay *claims* the run (:class:`ActionClaims`, one per gateway) from
``requires_action`` on, and a submission's relay, once the upstream has accepted it, *takes it
over*: the claim is marked superseded, the first relay stops its handlers, reports it and closes
its segment, then releases the claim, which the taker awaits (bounded) before publishing. While a
client's submission is in flight (:meth:`ActionClaims.incoming`), a first relay whose own
submission was refused leaves the run's end to that submission's relay instead of reporting it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import msgspec

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.upstream import UpstreamClient
from gateway.upstream.body import path_id
from parsers.assistants import Run
from parsers.errors import RemoteProtocolError

from .actions import ActionHandler, ActionOutcome, Emit, Skip
from .publisher import RunPublisher

__all__ = [
    "DONE",
    "ActionClaims",
    "Claim",
    "PendingAction",
    "fetch_run",
    "http_error_message",
]

log = logging.getLogger("runcast.relay")

DONE = HubEvent("done", b"[DONE]")

TAKEOVER_TIMEOUT = 10.0
"""Longest a submission's relay waits for the claimant to close its segment. Closing takes a
cancelled handler, at most one refused POST and one GET, so this is only hit by a stuck upstream."""


_MAX_RUN_BYTES = 8 * 1024 * 1024


class _Status(msgspec.Struct):
    status: str = ""


_status_decoder = msgspec.json.Decoder(_Status)


class Claim:
    """One relay's hold on a run's pending action."""

    __slots__ = ("released", "run_id", "superseded")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.superseded = asyncio.Event()
        """A client's submission was accepted: do not submit; close the segment."""
        self.released = asyncio.Event()
        """The claimant has closed its segment (or moved on): the channels are free."""


class ActionClaims:
    """run id -> the claim of the relay holding that run's pending action, and the clients'
    submissions in flight through runcast.

    Bounded by the live relays: each releases its claim (and its in-flight mark) when its segment
    ends, at the latest when its task ends.
    """

    def __init__(self, *, takeover_timeout: float = TAKEOVER_TIMEOUT) -> None:
        self._claims: dict[str, Claim] = {}
        self._incoming: dict[str, int] = {}
        self._takeover_timeout = takeover_timeout

    def __len__(self) -> int:
        return len(self._claims)

    def arriving(self, run_id: str) -> None:
        """A client's submission for ``run_id`` is on its way upstream through runcast."""
        self._incoming[run_id] = self._incoming.get(run_id, 0) + 1

    def arrived(self, run_id: str) -> None:
        """That submission was answered (accepted or refused)."""
        left = self._incoming.get(run_id, 0) - 1
        if left > 0:
            self._incoming[run_id] = left
        else:
            self._incoming.pop(run_id, None)

    def incoming(self, run_id: str) -> bool:
        """Whether a client's submission for ``run_id`` is in flight through runcast."""
        return run_id in self._incoming

    def claim(self, run_id: str) -> Claim:
        previous = self._claims.get(run_id)
        if previous is not None:
            previous.released.set()
        claim = self._claims[run_id] = Claim(run_id)
        return claim

    def release(self, claim: Claim) -> None:
        claim.released.set()
        if self._claims.get(claim.run_id) is claim:
            del self._claims[claim.run_id]

    async def take_over(self, run_id: str) -> bool:
        """Supersede ``run_id``'s claimant and wait until it has closed its segment.

        True when there was a claimant. Called by the relay of a client's submission once the
        upstream accepted it, before it publishes anything.
        """
        claim = self._claims.get(run_id)
        if claim is None or claim.released.is_set():
            return False
        claim.superseded.set()
        try:
            async with asyncio.timeout(self._takeover_timeout):
                await claim.released.wait()
        except TimeoutError:
            log.warning(
                "run %s: the previous relay did not yield within %gs",
                run_id,
                self._takeover_timeout,
            )
        return True


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
        return self.claim.superseded.is_set()

    async def decide(self, handler: ActionHandler, emit: Emit) -> ActionOutcome | None:
        """The handler's outcome, or None when a client's submission superseded it first.

        The handler runs as a child task so that a takeover can stop it; a sync tool handler
        already running in a worker thread finishes there, its result unused.
        """
        if self.superseded:
            return None
        answer = asyncio.create_task(handler.run_action(self.run, emit))
        stop = asyncio.create_task(self.claim.superseded.wait())
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

    async def close(self, out: RunPublisher, *, show: bool = True) -> None:
        """End the segment as the upstream did; ``show`` gives the creator the hidden event."""
        if show and self.hidden is not None:
            out.to_creator(*self.hidden)
        await out.emit(self.done or DONE)


async def fetch_run(
    upstream: UpstreamClient, thread_id: str, run_id: str, *, api_key: str | None = None
) -> tuple[str, bytes] | None:
    """``(status, run JSON)`` from one ``GET .../runs/{run_id}``; None if it cannot be learnt."""
    path = f"/threads/{path_id(thread_id)}/runs/{path_id(run_id)}"
    try:
        async with upstream.request("GET", path, api_key=api_key) as response:
            if not response.ok:
                return None
            data = await response.read(limit=_MAX_RUN_BYTES)
        return _status_decoder.decode(data).status, data
    except (UpstreamError, RemoteProtocolError, msgspec.DecodeError) as exc:
        log.warning("run %s: could not read its status: %s", run_id, exc)
        return None


def http_error_message(exc: UpstreamHTTPError) -> str:
    """The ``error.message`` of an upstream error body (spec §1.5), else a generic text."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return f"HTTP {exc.status}"
