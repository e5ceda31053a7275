"""A run relay started for a dead owner's run (``adopted``): the run taken up where it stood.

A function of the relay's shared state (:class:`~gateway.runs.relay.RunRelay`, passed
explicitly). The takeover watcher (``takeover.py``) won the run's lease for this node; the relay
holds it from the start, recovers the run first, from what its channel already holds
(:meth:`~gateway.runs.protocol.RunProtocol.published`), as a broken stream's recovery does
(``settling.py``), and then goes on as any relay: a run the owner left at an action its handler
answers is answered, anything else ends its segment. A run whose channel already has its end is
only closed; one whose end cannot be learnt gets ``runcast.upstream_error`` and ``done``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import logs
from gateway.errors import UpstreamConnectionError
from gateway.state import Lease
from gateway.upstream import RunStream

from .holding import answer_action
from .lifecycle import Input
from .recovery import upstream_error_event
from .settling import recover
from .takeover import OWNER_LOST

if TYPE_CHECKING:
    from .relay import RunRelay

__all__ = ["take_over"]


async def take_over(relay: RunRelay, lease: Lease) -> RunStream | None:
    """A dead owner's run (``takeover.py``): publish what its channels lack through its
    settled state, as a broken stream's recovery does; the stream answering its action next,
    if any."""
    keeper, out, protocol = relay.keeper, relay.out, relay.protocol
    keeper.adopt(lease)
    out.fence = keeper.fence
    run_id, thread_id = lease.run_id, relay.thread_id
    assert thread_id is not None
    await keeper.record(thread_id, relay.api_key)
    relay.resolve_start()
    logs.bind(run_id=run_id, thread_id=thread_id)
    relay.life.feed(Input.TAKEN_OVER)
    published = await protocol.published(relay.env.broker, run_id)
    relay.finals = published.finals
    if published.status in protocol.terminal_statuses:
        # The owner published the run's end: only its segment's end may be missing.
        relay.last_status = published.status
        relay.life.feed(Input.RECOVERED)
        if not published.done:
            await out.emit(protocol.end_of_segment)
        return None
    if await recover(relay, OWNER_LOST, published):
        relay.life.feed(Input.RECOVERED)
        if relay.pending is not None:
            return await answer_action(relay)
        await out.emit(protocol.end_of_segment)
        return None
    relay.life.feed(Input.GAVE_UP)
    exc = UpstreamConnectionError(
        "runcast: the run's gateway node stopped and the run's end could not be learnt"
    )
    event = upstream_error_event(
        exc, message=str(exc), last_status=published.status, run_id=run_id, thread_id=thread_id
    )
    await out.emit_batch([event, protocol.end_of_segment])
    return None
