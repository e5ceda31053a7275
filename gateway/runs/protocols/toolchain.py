"""``ToolChain``: runcast answering the function calls a Responses or Chat stream ends with.

Theory of operation. The relay (``relay.py``) shows the chain every typed event of the stream it
pumps (:meth:`ToolChain.observe`). When that stream has ended with its last word, it asks
:meth:`ToolChain.next` for the follow-up: the protocol's :class:`ChainRound` names the calls the
stream ended with (a ``response.completed`` with ``function_call`` items; a chat choice that
finished with ``tool_calls``); when every call has a handler, :class:`~gateway.tools.ToolAutomation`
runs them (its executor: timeouts, failures as outputs, round limit, ``runcast.tool_call.*``
events), and the round builds the follow-up request's body, which is posted once (no retry: a
second POST would create and bill a second response) with ``stream: true``. The relay pumps its
stream into the same channels, and so on until a stream ends without calls, or runcast stops:

- some call has no handler (policy ``all``), or the chain cannot be continued (``store: false``):
  ``runcast.tool_automation.skipped`` names the calls left to the application;
- the round limit, or a failed handler with ``on_error="cancel"``:
  ``runcast.tool_automation.cancelled`` (published by the automation).

A protocol's own end marker (``data: [DONE]``) is held while the chain is expected to go on
(:meth:`holds`): an SDK stops reading at the first one. The relay releases it when the chain
stops there. ``runcast.*`` events go to the channels, and to the creator's response only for
Responses with ``emit_tool_events_to_creator`` (the openai SDK would try to read them as chat
chunks); the creator's copy has ``type`` set to the event's name (the SDK reads a Responses
event's kind from its ``type``) and no ``error`` member (``events.creator_view``). With the request header ``Runcast-Creator-Stream: first`` the creator's response
carries the first stream only (``responses.stream()`` holds one response per stream).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from gateway.hub import HubEvent
from gateway.tools import Skip, Submit, ToolAutomation, ToolOutput
from gateway.tools import events as tool_events
from gateway.tools.automation import UNPLACEABLE
from gateway.upstream import UpstreamResponse

__all__ = [
    "CREATOR_STREAM_HEADER",
    "ChainRound",
    "FunctionCall",
    "FunctionSpec",
    "Opener",
    "ToolChain",
]

CREATOR_STREAM_HEADER = "Runcast-Creator-Stream"
"""``first``: the creator's response carries the first stream of a chain only."""

Opener = Callable[[], Awaitable[UpstreamResponse]]
Publish = Callable[[HubEvent, bytes | None], Awaitable[None]]
"""Publishes a ``runcast.*`` event to the channels and, when given, the creator's copy of its
data to the creator."""


_encode = msgspec.json.Encoder().encode


class FunctionSpec(msgspec.Struct, frozen=True, gc=False):
    name: str
    arguments: str


class FunctionCall(msgspec.Struct, frozen=True, gc=False):
    """One call a stream ended with, in the executor's ``PendingCall`` shape; ``type`` is
    ``function`` for the calls runcast can answer (a Responses ``custom_tool_call`` is not)."""

    id: str
    function: FunctionSpec
    type: str = "function"


class ChainRound(Protocol):
    """One protocol's part of a chain: what a stream ended with, and the follow-up's body."""

    owner: str
    """How the events name a stream's id: ``response_id`` or ``completion_id``."""

    def observe(self, typed: object) -> None:
        """Fold one typed event of the current stream in."""
        ...

    def ended_with(self) -> tuple[str, list[FunctionCall]] | None:
        """The stream's id and the calls it ended with (None: no call, nothing to answer)."""
        ...

    def blocked(self) -> str | None:
        """Why the chain cannot go on here whatever the handlers (None: it can)."""
        ...

    def follow_up(self, outputs: Sequence[ToolOutput]) -> bytes:
        """The follow-up request's body; the round now waits for the follow-up's stream."""
        ...


class ToolChain:
    """Continues one relay's stream with tool outputs (module docstring)."""

    __slots__ = ("_automation", "_chain", "_open", "_round", "_to_creator", "creator_first")

    def __init__(
        self,
        automation: ToolAutomation,
        round_: ChainRound,
        open_follow_up: Callable[[bytes], Awaitable[UpstreamResponse]],
        *,
        events_to_creator: bool,
        creator_first: bool,
    ) -> None:
        self._automation = automation
        self._round = round_
        self._open = open_follow_up
        self._to_creator = events_to_creator
        self._chain: str | None = None
        self.creator_first = creator_first
        """The creator's response ends with the first stream."""

    def observe(self, typed: object) -> None:
        self._round.observe(typed)

    def holds(self) -> bool:
        """Whether to hold back the ``[DONE]`` that closes the stream: the chain is expected to
        go on after it."""
        ended = self._round.ended_with()
        return (
            ended is not None
            and bool(ended[1])
            and self._round.blocked() is None
            and all(call.type == "function" for call in ended[1])
            and self._automation.covers(ended[1])
        )

    async def next(self, publish: Publish) -> Opener | None:
        """Answer the calls the stream ended with and return the follow-up's opener; None
        when the chain ends here (after reporting why, if there were calls)."""
        ended = self._round.ended_with()
        if ended is None:
            return None
        stream_id, calls = ended
        if self._chain is None:
            self._chain = stream_id
        owner = {self._round.owner: stream_id}

        async def emit(name: str, data: bytes) -> None:
            await publish(
                HubEvent(name, data), _creator_copy(name, data) if self._to_creator else None
            )

        reason = self._round.blocked()
        if reason is None and not calls:
            reason = (
                "the stream ended asking for tool calls and carried none runcast could read "
                "(a tool-call index it cannot place)"
            )
        ids = [call.id for call in calls]
        if reason is None and (not all(ids) or len(set(ids)) < len(ids)):
            # Outputs are matched to calls by id: answering these would run a tool twice, or
            # send outputs the upstream cannot place.
            reason = UNPLACEABLE
        if reason is None and any(call.type != "function" for call in calls):
            kinds = sorted({call.type for call in calls if call.type != "function"})
            reason = f"runcast answers function calls only, not {', '.join(kinds)}"
        if reason is None and not self._automation.covers(calls):
            missing = sorted({call.function.name for call in self._automation.unhandled(calls)})
            reason = f"no handler for {', '.join(map(repr, missing))} (policy 'all')"
        if reason is not None:
            await emit(*_skipped(owner, reason, calls))
            return None
        outcome = await self._automation.answer_calls(self._chain, calls, owner=owner, emit=emit)
        if isinstance(outcome, Skip):
            await emit(*_skipped(owner, outcome.reason, calls))
            return None
        if not isinstance(outcome, Submit):
            return None  # Cancel: the automation published why
        return functools.partial(self._open, self._round.follow_up(outcome.tool_outputs))

    async def aclose(self) -> None:
        """The chain is over: the automation's round count for it goes."""
        if self._chain is not None:
            await self._automation.forget(self._chain)


def _skipped(
    owner: dict[str, str], reason: str, calls: Sequence[FunctionCall]
) -> tuple[str, bytes]:
    listed = [(call.id, call.function.name) for call in calls]
    return tool_events.automation_skipped(**owner, reason=reason, calls=listed)


def _creator_copy(name: str, data: bytes) -> bytes:
    view = tool_events.creator_view(data)
    # Every runcast event's data is a non-empty JSON object.
    return b'{"type":' + _encode(name) + b"," + view[1:]
