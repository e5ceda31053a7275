"""A Responses or Chat stream cut before its last word: resumed, else settled (reconciled or lost).

Functions of the relay's state (:class:`~gateway.runs.protocols.relay.StreamRelay`, passed
explicitly); the relay's ``_relay_stream`` asks :func:`resumption` first and :func:`settle` when
there is none.

Resumption. A stream the upstream can continue (a background response) that is cut before its
last word is resumed after its last ``sequence_number`` through the spec's ``resume`` request
(``reopen``), after a backoff, up to ``max_resumes`` times without a new event and
:data:`MAX_RESUMES` times in all (never after a 4xx answer
but 408 and 429: the upstream will not resume it); an event at or
before that number is never relayed twice, so nobody sees a gap or a duplicate.

Reconciliation. A stream cut that cannot be resumed (or not any more), whose id is known, is
handed to the ``reconcile`` callable when the relay has one (a stored response:
``responses_recovery.py``): what it returns (``runcast.recovered`` then the protocol's last word
built from the finished object) is published in place of the lost tail, and ends the stream
(and a tool chain: the reconciled stream is not continued). Without one, or when it cannot learn
the end, the stream ends with ``runcast.upstream_lost`` (``lost.py``).

A stream past ``max_stream_bytes`` (:class:`~gateway.errors.StreamTooLarge`) is neither resumed
nor reconciled: it ends with ``runcast.upstream_lost``, reason ``stream_too_large``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from gateway.errors import StreamTooLarge, UpstreamHTTPError

from ..recovery import failure_reason
from .lost import lost_event
from .toolchain import Opener

if TYPE_CHECKING:
    from .relay import StreamRelay

__all__ = ["lost", "resumption", "settle"]

log = logging.getLogger("runcast.relay")

_RESUME_BACKOFF = 0.2
_RESUME_BACKOFF_MAX = 2.0
"""Seconds before resuming a cut stream, doubling with each resumption that brings nothing new."""

MAX_RESUMES = 100
"""Resumptions of one stream in all: an upstream whose every resume brings one event and ends
would otherwise be resumed some four times a second until ``max_stream_bytes``."""


def _refused(exc: BaseException) -> bool:
    """An HTTP answer that a retry would only repeat (a 4xx other than 408 and 429)."""
    return (
        isinstance(exc, UpstreamHTTPError)
        and 400 <= exc.status < 500
        and exc.status not in (408, 429)
    )


async def resumption(relay: StreamRelay, exc: BaseException) -> Opener | None:
    """The opener of the upstream's continuation of a resumable stream after its last
    event, after a backoff; None when it cannot be resumed (or has failed too often)."""
    object_id, cursor, reopen = relay.object_id, relay.cursor, relay.reopen
    if not relay.resumable or object_id is None or cursor is None or reopen is None:
        return None
    if relay.cancelled:
        return None  # it ended because it was cancelled: polled to that end at once
    if _refused(exc):
        return None  # the upstream will not resume it (too old, deleted): asking again won't help
    if isinstance(exc, StreamTooLarge):
        return None  # a runaway: more of it is what must not be read
    request = relay.spec.resume(object_id, cursor)
    if request is None or relay.failures >= relay.max_resumes or relay.resumes >= MAX_RESUMES:
        return None
    if relay.reconcile is not None and await relay.reconcile.cancelled(object_id):
        # Cancelled through another node, or straight upstream: polled to that end at once.
        relay.cancelled = True
        return None
    relay.failures += 1
    relay.resumes += 1
    log.warning(
        "%s %s: upstream stream cut after %d (%s); resuming",
        relay.spec.kind,
        object_id,
        cursor,
        relay.scrub(str(exc)),
    )
    await asyncio.sleep(min(_RESUME_BACKOFF * 2 ** (relay.failures - 1), _RESUME_BACKOFF_MAX))
    relay.resuming = True
    path, query = request
    return functools.partial(reopen, path, query)


async def settle(relay: StreamRelay, exc: BaseException, *, reason: str | None = None) -> None:
    """End a stream that cannot be continued: reconciled when possible, else lost."""
    reconcile, object_id = relay.reconcile, relay.object_id
    found = None
    # A runaway stream is not reconciled: the object would go on growing while it is polled.
    if reconcile is not None and object_id is not None and not isinstance(exc, StreamTooLarge):
        log.warning(
            "%s %s: upstream stream cut after %s (%s); polling its end",
            relay.spec.kind,
            object_id,
            relay.cursor,
            relay.scrub(str(exc)),
        )
        found = await reconcile(object_id, relay.cursor, reason or failure_reason(exc))
    if found is not None:
        await relay.emit(found.events)
        if found.ended:
            relay.ended = True
            relay.outcome = "recovered"
            return
    relay.outcome = "upstream_lost"
    await lost(relay, exc, status=found.status if found is not None else None, reason=reason)


async def lost(
    relay: StreamRelay, exc: BaseException, *, status: str | None = None, reason: str | None = None
) -> None:
    """Publish ``runcast.upstream_lost`` for ``exc`` (``status``: the object's, found ended)."""
    kind = relay.spec.kind
    log.warning("%s %s: upstream stream lost: %s", kind, relay.object_id, relay.scrub(str(exc)))
    relay.resolve_start()
    reason = reason or failure_reason(exc)
    said = relay.upstream_said
    message = (
        f"runcast lost the upstream stream ({reason}) before its end: "
        + relay.scrub(str(exc))
        + (f" (the {kind} is {status})" if status is not None else "")
        + (f"; the upstream's last error: {relay.scrub(said[:500])}" if said else "")
    )
    event = lost_event(
        message,
        reason=reason,
        kind=kind,
        object_id=relay.object_id,
        cursor=relay.cursor,
        status=status,
    )
    await relay.emit([event])
