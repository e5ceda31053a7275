"""A run relay's way back after its stream broke: reported, recovered, the settled run published.

Functions of the relay's shared state (:class:`~gateway.runs.relay.RunRelay`, passed explicitly);
the events they publish are built in ``recovery.py``, and how a run's end is learnt is its
protocol's (``recover``: ``assistants/recovery.py``, ``polling.py``).

Upstream failures after the first event (:class:`~gateway.errors.StreamTruncated`: an EOF or a
``done`` before the run's last word, that ``done`` never relayed; timeouts, connection loss, an
oversized event) publish ``runcast.upstream_error``
(``{"error": {...}, "reason", "last_status", "run_id", "thread_id"}``) to the channels at once.
Recovery: the relay then polls ``GET .../runs/{run_id}`` with backoff, through outages, for up to
``recovery_timeout``. Once the run has settled (terminal or ``requires_action``) it publishes
``runcast.recovered``, the final messages and steps the channels missed (``assistants/missed.py``:
the relay notes every final one it relays), then the polled Run as ``thread.run.<status>``, and
carries on as after a live event of that status: ``done``, or, for a ``requires_action`` its
action handler answers, the held action and its continuation (``holding.py``). The creator's
response stays open meanwhile and gets the same events; only when the run's end cannot be learnt
does it get the ``runcast.upstream_error`` (the openai SDK raises on it) and end. A stream cut
at ``max_stream_bytes`` (``stream_too_large``) is not recovered: its creator gets the error at
once. The channels'
segment always ends with ``done`` (synthesized when the upstream sent none), and a run channel is
closed once its run is over (or its recovery failed). A run taken over from a dead owner is
recovered the same way (``adoption.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.errors import StreamTooLarge, UpstreamHTTPError
from parsers.errors import RemoteProtocolError

from .holding import drop_pending, hold_action
from .lifecycle import Input
from .recovery import Recovery, failure_reason, recovered_event, upstream_error_event
from .takeover import Published, release_round, report_unknown_submission

if TYPE_CHECKING:
    from .relay import RunRelay

__all__ = ["publish_settled", "recover", "settle", "upstream_error"]

log = logging.getLogger("runcast.relay")


async def upstream_error(relay: RunRelay, exc: BaseException) -> bool:
    """Report a failed stream, then recover the run; True when the recovered run waits at
    a ``requires_action`` the relay answers next (the segment goes on as if live)."""
    relay.life.feed(Input.STREAM_FAILED)
    log.warning("run %s: upstream stream failed: %s", relay.run_id, relay.scrub(str(exc)))
    relay.resolve_start()
    await relay.emit_batch()
    await relay.flush_held()
    out, end = relay.out, relay.protocol.end_of_segment
    event = upstream_error_event(
        exc,
        message=relay.scrub(str(exc)),
        last_status=relay.last_status,
        run_id=relay.run_id,
        thread_id=relay.thread_id,
    )
    # The creator's response stays open while the run is recovered: it is told of the
    # failure only if the recovery fails (the openai SDK raises on it and stops reading).
    seq = await out.emit(event, to_creator=False)
    # Neither a refused continuation nor a runaway stream is recovered: polling would wait for
    # a run that goes on generating, then fetch all of it.
    recoverable = not isinstance(exc, UpstreamHTTPError | StreamTooLarge)
    if recoverable and await recover(relay, failure_reason(exc)):
        relay.life.feed(Input.RECOVERED)
        if relay.pending is not None:
            return True
        await out.emit(end)
        return False
    relay.life.feed(Input.GAVE_UP)
    out.to_creator(event, seq)
    out.end_creator()
    await out.emit(end, to_creator=False)
    return False


async def recover(relay: RunRelay, reason: str, published: Published | None = None) -> bool:
    """Poll the cut-off run until it settles and publish what its channels missed, then its
    settled state; False when its end could not be learnt in time. ``published``: a dead
    owner's run, whose channel holds that (``takeover.py``)."""
    run_id, thread_id, within = relay.run_id, relay.thread_id, relay.env.recovery_timeout
    if run_id is None or thread_id is None or within <= 0:
        return False
    recovery = await relay.protocol.recover(
        relay.env.upstream,
        thread_id,
        run_id,
        relay.finals,
        within=within,
        api_key=relay.api_key,
    )
    if published is not None:
        await report_unknown_submission(
            relay.env.marks, relay.out, run_id=run_id, thread_id=thread_id, recovery=recovery
        )
    if recovery is None:
        return False
    notice = recovered_event(recovery, reason=reason, run_id=run_id, thread_id=thread_id)
    await relay.out.emit_batch([notice, *recovery.missed.events])
    for event in recovery.missed.events:
        relay.finals.note_published(event)
    await publish_settled(relay, recovery, published)
    return True


async def publish_settled(
    relay: RunRelay, recovery: Recovery, published: Published | None = None
) -> None:
    """The recovered run's settled state, published as a live one would be."""
    protocol, out = relay.protocol, relay.out
    status = recovery.status
    relay.last_status = status
    event = protocol.settled_event(status, recovery.run)
    # An action the relay held when the stream broke is over: the upstream's answer rules.
    await drop_pending(relay)
    if status != protocol.action_status:
        await out.emit(event)
        return
    try:
        action = protocol.held_action(protocol.decode_run(recovery.run))
    except RemoteProtocolError as exc:
        log.warning("run %s: the recovered run does not decode: %s", relay.run_id, exc)
        await out.emit(event)
        return
    relay.action = action
    if relay.handler is None:
        await out.emit(event)
    elif (
        published is not None
        and published.status == status
        and published.action_ids == action.call_ids
    ):
        # The dead owner published this very action: it is answered without repeating it.
        await release_round(relay.env.rounds, action)
        await hold_action(relay, action, event, publish=False)
    else:
        if published is not None:
            await release_round(relay.env.rounds, action)
        await hold_action(relay, action, event)


async def settle(relay: RunRelay, *, to_creator: bool = False) -> None:
    """Poll the run until it settles and publish its final state (bounded)."""
    within = relay.env.recovery_timeout
    run_id, thread_id = relay.run_id, relay.thread_id
    if run_id is None or thread_id is None or within <= 0:
        return
    found = await relay.protocol.poll_settled(
        relay.env.upstream, thread_id, run_id, within=within, api_key=relay.api_key
    )
    if found is not None:
        status, data = found
        relay.last_status = status
        event = relay.protocol.settled_event(status, data)
        await relay.out.emit(event, to_creator=to_creator)
