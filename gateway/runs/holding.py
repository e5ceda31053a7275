"""A run relay's action path: the ``requires_action`` it holds, answers or hands on.

Functions of the relay's shared state (:class:`~gateway.runs.relay.RunRelay`, passed explicitly);
what an answer does upstream and on the channels is the
:class:`~gateway.runs.answering.ActionAnswerer`'s.

Segments. ``thread.run.requires_action`` ends an upstream response (spec §2.3, §5). With an
:class:`~gateway.runs.actions.ActionHandler`, the following ``done`` is held while the handler
decides (a :class:`~gateway.runs.answering.PendingAction`); ``Submit`` posts the outputs
(``stream: true``) once and the continuation is pumped into the same channels and feed, so seq
continues and the intermediate ``done`` never shows. ``Skip`` passes the action on; ``Cancel``
(and outputs ready only after ``expires_at``) cancels the run and reports its final status. If a
client's own submission through runcast is accepted first, this relay stops answering, reports
``runcast.tool_automation.superseded`` and closes its segment before the client's relay goes on
(``answering.py``); if the upstream refuses runcast's submission with a 400 (the run no longer
waits: a client submitted directly, or it expired), it reports
``runcast.tool_automation.rejected``, publishes the run's terminal status if it has one, and ends
its segment without failing the run's channel.

A run left at an unanswered ``requires_action`` is handed to the registry's
:class:`~gateway.runs.expiry.ActionExpiry`, which ends its channels once the upstream has
expired it (:func:`watch_expiry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.upstream import RunStream

from .actions import HeldAction
from .answering import PendingAction
from .lifecycle import Input

if TYPE_CHECKING:
    from .relay import RunRelay

__all__ = [
    "answer_action",
    "drop_pending",
    "hold_action",
    "refused",
    "rejected",
    "watch_expiry",
]


def refused(exc: BaseException) -> bool:
    """An HTTP 400 to runcast's submission: the run does not (or no longer) accept these outputs."""
    return isinstance(exc, UpstreamHTTPError) and exc.status == 400


async def hold_action(
    relay: RunRelay, action: HeldAction, hub_event: HubEvent, *, publish: bool = True
) -> None:
    """Publish a ``requires_action`` that the handler will answer, holding the segment
    (``publish=False``: its channels have it already)."""
    assert relay.answerer is not None
    await relay.emit_batch()  # what came before it in the same read
    relay.pending = await relay.answerer.hold(action, hub_event, publish=publish)
    relay.life.feed(Input.ACTION_HELD)


async def answer_action(relay: RunRelay) -> RunStream | None:
    """Answer the held action: the submission's stream to pump next, or None once the segment
    has been ended."""
    pending = relay.pending
    assert pending is not None and relay.answerer is not None
    if relay.thread_id is None:
        stream = None
        await relay.answerer.close(pending)
    else:
        stream = await relay.answerer.answer(pending, relay.thread_id)
    if stream is None:
        relay.pending = None
        relay.life.feed(Input.CLOSED)
    else:
        relay.life.feed(Input.SUBMITTED)
    return stream


async def rejected(relay: RunRelay, pending: PendingAction, exc: UpstreamHTTPError) -> None:
    """The upstream refused runcast's submission before any continuation event."""
    assert relay.answerer is not None
    relay.pending = None
    relay.life.feed(Input.REFUSED)
    thread_id = relay.thread_id or pending.action.thread_id
    status = await relay.answerer.rejected(pending, exc, thread_id)
    if status is not None:
        relay.last_status = status


async def drop_pending(relay: RunRelay) -> None:
    """The held action is over unanswered (the relay ends, or a recovery found the run past it:
    the upstream's answer rules): its claim goes."""
    pending, relay.pending = relay.pending, None
    if pending is not None:
        assert relay.answerer is not None
        await relay.answerer.drop(pending)


async def watch_expiry(relay: RunRelay) -> None:
    """The run waits for a client's outputs: its channels end once the upstream expires it."""
    action, expiry, seq = relay.action, relay.env.expiry, relay.out.run_seq()
    if (
        relay.last_status != relay.protocol.action_status
        or relay.life.broken
        or action is None
        or action.expires_at is None
        or expiry is None
        or seq is None
        or relay.thread_id is None
    ):
        return
    await expiry.watch(
        action.run_id,
        relay.thread_id,
        expires_at=action.expires_at,
        seq=seq,
        api_key=relay.api_key,
    )
