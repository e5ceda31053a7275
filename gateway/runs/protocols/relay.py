"""``StreamRelay``: pumps one Responses or Chat Completions stream into the hub and its creator.

Theory of operation. A relay is started for each creating request with ``"stream": true`` and
runs as a task owned by the :class:`~gateway.runs.registry.RelayRegistry`, never by the creator's
request handler: a creator that leaves only detaches its feed, and the stream goes on being
pumped to its subscribers. For the events of each upstream read, in order: type each one through
the protocol's :class:`~gateway.runs.protocols.spec.StreamSpec`, publish them as one batch to the
stream's channels (the hub numbers them), push them to the creator's feed, and yield to the
loop, so the creator's response writes the batch before the next one reaches the subscribers.

Events before the stream's id is known (a ``keepalive`` before ``response.created``) are held,
so the stream's own channel starts with the first of them; ``ready`` (a
:class:`~gateway.runs.readiness.Readiness`, as trio's ``task_status``) is marked started once the id
is known and its first events are published (so the channel exists on every node), and the
creator's head can name it and carry its subscribe token. An upstream failure
before any event is reported through it instead and nothing is published.

Resumption. A stream the upstream can continue (a background response) that is cut before its
last word is resumed after its last ``sequence_number`` through the spec's ``resume`` request
(``reopen``), after a backoff, up to ``max_resumes`` times without a new event (never after a 4xx answer
but 408 and 429: the upstream will not resume it); an event at or
before that number is never relayed twice, so nobody sees a gap or a duplicate.

Reconciliation. A stream cut that cannot be resumed (or not any more), whose id is known, is
handed to the ``reconcile`` callable when the relay has one (a stored response:
``responses_recovery.py``): what it returns (``runcast.recovered`` then the protocol's last word
built from the finished object) is published in place of the lost tail, and ends the stream
(and a tool chain: the reconciled stream is not continued). Without one, or when it cannot learn
the end, the stream ends with ``runcast.upstream_lost``.

The end. After the protocol's last word (``response.completed|failed|incomplete``, a chat
chunk's ``[DONE]``), the end of the body is a clean end. A body that ends or breaks before it
(and cannot be resumed) publishes ``runcast.upstream_lost`` (``{"error": {...}, "reason", "kind", "id", "cursor"}``, and
``status`` when the object was found ended without a last word of its own; its
``error`` member makes the openai SDK raise) to the channels and the creator: a chat stream is
never retried, since a retry regenerates and bills again. The stream's own channel is closed
once the stream is over; the channels named up front stay open for the next stream.

Tool chains. With a :class:`~gateway.runs.protocols.toolchain.ToolChain`, a stream that ends
with function calls runcast answers is continued by a follow-up stream, pumped by this same task
into the same channels (and the creator's response, unless it asked for the first stream only);
the follow-up also gets its own channel, closed at its end. Each stream of the chain has its own
id, cursor and resumption; a follow-up that fails, even before its first event (its POST is never
retried), ends the chain with ``runcast.upstream_lost``.

Ownership (Redis mode, with a :class:`~gateway.runs.protocols.ownership.StreamOwnership`). From
the stream's id on, the relay holds a lease keyed by its own channel (``gateway.runs.keeper``),
fences every publish with it, and keeps the stream in the shared live records; it gives both up
when the stream is over. A relay stopped before the stream's end (the gateway shuts down) leaves
its channels open and the stream live, for another node to take over. A relay that loses its lease (another node took the stream over) stops
at once and publishes and closes nothing more.

Takeover (with a :class:`~gateway.runs.protocols.ownership.StreamAdoption`: the owner died and
this node won its lease). The relay reads where the stream's own channel stands (its snapshot in
the shared log) and, into the same channels: a resumable (background) response is resumed after
the last ``sequence_number`` published, as a cut stream is, so subscribers see one gap-free,
duplicate-free stream; a stored one is reconciled by polling; any other stream (chat,
``store: false``) ends with ``runcast.upstream_lost`` ``reason: "owner_lost"``. A stream whose
channel already has its last word is only closed. A tool chain the dead owner was in is not
continued: the taker ends after the response it recovers (a follow-up under way, whose id the
record does not hold, ends with ``runcast.upstream_lost``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

import msgspec

from gateway.errors import (
    StreamTruncated,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
)
from gateway.hub import Broker, HubEvent
from gateway.metrics import NO_METER, RunMeter
from gateway.state import Lease, LiveStream
from gateway.upstream import UpstreamResponse
from gateway.upstream.events import EventStream
from parsers.errors import RemoteProtocolError

from ..feed import CreatorFeed
from ..keeper import LeaseKeeper
from ..readiness import Readiness
from ..recovery import failure_reason
from .ownership import StreamAdoption, StreamOwnership, published_cursor
from .publisher import ChannelPublisher
from .spec import Reconcile, StreamSpec
from .toolchain import ToolChain

__all__ = ["OWNER_LOST", "UPSTREAM_LOST_EVENT", "StreamRelay", "StreamStart"]

log = logging.getLogger("runcast.relay")

UPSTREAM_LOST_EVENT = "runcast.upstream_lost"
OWNER_LOST = "owner_lost"
OWNER_CHANGED = "owner_changed"
"""``reason`` of the ``runcast.upstream_lost`` a creator gets when another node took its stream."""
"""The ``reason`` of what a node taking a dead owner's stream over publishes."""

_RESUME_BACKOFF = 0.2
_RESUME_BACKOFF_MAX = 2.0
"""Seconds before resuming a cut stream, doubling with each resumption that brings nothing new."""

_MAX_HELD_EVENTS = 64
"""Events held before the stream's id is known; more means a broken upstream."""


class StreamStart(msgspec.Struct, frozen=True, kw_only=True):
    """What the creator's response head needs."""

    object_id: str | None
    request_id: str | None


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str = "runcast_upstream_lost"
    param: None = None
    code: str = "upstream_lost"


class _Lost(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    error: _ErrorBody
    reason: str
    kind: str
    id: str | None
    cursor: int | None
    status: str | None = None
    """The object's terminal status, when a reconciliation found one with no event (cancelled)."""


_encode = msgspec.json.Encoder().encode


def _refused(exc: BaseException) -> bool:
    """An HTTP answer that a retry would only repeat (a 4xx other than 408 and 429)."""
    return (
        isinstance(exc, UpstreamHTTPError)
        and 400 <= exc.status < 500
        and exc.status not in (408, 429)
    )


class StreamRelay:
    """One protocol stream's pump. Start it through the registry; ``run()`` is its task body."""

    def __init__(
        self,
        spec: StreamSpec,
        opener: Callable[[], Awaitable[UpstreamResponse]],
        broker: Broker,
        *,
        feed: CreatorFeed | None,
        channels: list[str],
        reopen: Callable[[str, str], Awaitable[UpstreamResponse]] | None = None,
        max_resumes: int = 5,
        max_event_bytes: int | None = None,
        scrub: Callable[[str], str] = str,
        meter: RunMeter = NO_METER,
        chain: ToolChain | None = None,
        reconcile: Reconcile | None = None,
        ownership: StreamOwnership | None = None,
        adopted: StreamAdoption | None = None,
    ) -> None:
        self._spec = spec
        self._ownership = ownership
        self._adopted = adopted
        self._keeper: LeaseKeeper | None = None
        self._owning = False
        """The lease was asked for (once, whatever came of it)."""
        self._body: asyncio.Task[None] | None = None
        self._reconcile = reconcile
        self._chain = chain
        self._round = 0
        """0 for the creating request's stream, n for the n-th follow-up."""
        self._held_end: HubEvent | None = None
        """The end marker held back while the chain is expected to go on."""
        self._opener = opener
        self._reopen = reopen
        self._meter = meter
        self._max_resumes = max_resumes
        self._out = ChannelPublisher(broker, feed, channels)
        self._broker = broker
        if ownership is not None:
            self._keeper = LeaseKeeper(
                ownership.leases,
                ownership.live,
                ttl=ownership.ttl,
                on_lost=self._lost_lease,
                on_lease=self._new_lease,
            )
            self._out.on_fenced = self._keeper.fenced
        self._max_event_bytes = max_event_bytes
        self._scrub = scrub
        self.ready: Readiness[StreamStart] = Readiness()
        self._request_id: str | None = None
        self._object_id: str | None = None
        self._held: list[HubEvent] = []
        self._cursor: int | None = None
        self._ended = False
        self._received = False
        self._resumable = False
        self._resuming = False
        self._failures = 0
        """Resumptions since the last new event."""
        self._outcome = "no_stream"
        """How the relay ended, for the metrics: ``ended`` (the protocol's last word),
        ``recovered`` (reconciled from the finished object), ``upstream_lost`` or ``no_stream``
        (refused, or stopped before its end)."""

    @property
    def object_id(self) -> str | None:
        return self._object_id

    @property
    def channel(self) -> str | None:
        """The stream's own hub channel, once its id is known."""
        return self._out.own

    def stop_creator(self) -> None:
        """The gateway stops before the stream's end: the creator's response says so."""
        self._out.stop_creator()

    async def run(self) -> None:
        body = asyncio.get_running_loop().create_task(self._run())
        self._body = body
        try:
            await body
        except asyncio.CancelledError:
            task = asyncio.current_task()
            lost = self._keeper is not None and self._keeper.lost
            if not lost or (task is not None and task.cancelling()):
                raise
            # Another node took the stream over: this relay just stops.

    async def _run(self) -> None:
        opener: Callable[[], Awaitable[UpstreamResponse]] | None = self._opener
        self._outcome = "no_stream"
        ended = False
        try:
            if self._adopted is not None:
                opener = await self._take_over(self._adopted)
            while opener is not None and await self._relay_stream(opener):
                opener = await self._follow_up()
            ended = True
        finally:
            keeper = self._keeper
            # Stopped before its end (the gateway shuts down) while holding the stream: its
            # channels stay open and it stays live, for another node to take over.
            handover = (
                not ended and keeper is not None and keeper.lease is not None and not keeper.lost
            )
            try:
                await self._finish(close=not handover)
            finally:
                self._meter.finished(self._outcome)
                if keeper is not None:
                    await keeper.release(ended=ended)

    def _lost_lease(self) -> None:
        """Another node owns the stream now: publish nothing more, stop pumping. The creator's
        response ends with ``runcast.upstream_lost`` (``reason: "owner_changed"``; its
        ``error`` makes the SDK raise), as a run's creator gets ``runcast.upstream_error``."""
        self._out.stopped = True
        body = _Lost(
            error=_ErrorBody(
                message="runcast: another gateway node took this stream over; "
                "follow it on its channels",
            ),
            reason=OWNER_CHANGED,
            kind=self._spec.kind,
            id=self._object_id,
            cursor=self._cursor,
        )
        self._out.to_creator([HubEvent(UPSTREAM_LOST_EVENT, _encode(body))])
        self._out.end_creator()
        if self._body is not None:
            self._body.cancel()

    def _new_lease(self, lease: Lease) -> None:
        assert self._ownership is not None
        self._out.fence = self._ownership.leases.fence(lease)

    async def _own(self) -> None:
        """Hold the stream's lease from its id on, and record it live (Redis mode)."""
        keeper, ownership, object_id = self._keeper, self._ownership, self._object_id
        if keeper is None or ownership is None or object_id is None or self._owning:
            return
        self._owning = True
        try:
            await keeper.acquire(self._spec.channel(object_id), ownership.owner)
        except Exception as exc:  # the store unreachable: the stream goes on, unwatched
            log.warning("%s %s: no lease (no failover): %s", self._spec.kind, object_id, exc)
            return
        self._out.fence = keeper.fence
        await keeper.record("", ownership.api_key, stream=self._live_stream(ownership.stored))

    def _live_stream(self, stored: bool) -> LiveStream:
        assert self._object_id is not None
        return LiveStream(
            kind=self._spec.kind,
            object_id=self._object_id,
            channels=tuple(self._out.others),
            resumable=self._resumable,
            stored=stored,
        )

    async def _take_over(
        self, adopted: StreamAdoption
    ) -> Callable[[], Awaitable[UpstreamResponse]] | None:
        """A dead owner's stream (module docstring): its resumption's opener, or None once it
        is settled here."""
        stream = adopted.stream
        self._owning = True
        keeper, ownership = self._keeper, self._ownership
        if keeper is not None and ownership is not None:
            keeper.adopt(adopted.lease)
            self._out.fence = keeper.fence
            await keeper.record("", ownership.api_key, stream=stream)
        self._object_id = stream.object_id
        self._out.own = self._spec.channel(stream.object_id)
        self._received = True
        self._resolve_start()
        self._resumable = stream.resumable
        published = await published_cursor(self._broker, self._out.own)
        if published.done:
            self._ended = True
            self._outcome = "ended"
            return None
        self._cursor = published.cursor
        same = published.object_id in (None, stream.object_id)
        if not same:
            self._reconcile = None  # a tool chain's follow-up was under way: not continued
        exc = UpstreamConnectionError("the gateway node relaying this stream stopped")
        if same and self._resumable and self._cursor is not None and self._reopen is not None:
            request = self._spec.resume(stream.object_id, self._cursor)
            if request is not None:
                log.warning(
                    "%s %s: its owner stopped; resuming after %d",
                    self._spec.kind,
                    stream.object_id,
                    self._cursor,
                )
                self._resuming = True
                return functools.partial(self._reopen, *request)
        await self._settle(exc, reason=OWNER_LOST)
        return None

    async def _relay_stream(self, opener: Callable[[], Awaitable[UpstreamResponse]]) -> bool:
        """Pump one upstream stream, resumed if cut; True when it ended with its last word."""
        while True:
            opened = self._meter.opened()
            try:
                await self._pump(opener, opened)
                return True
            except (UpstreamError, RemoteProtocolError) as exc:
                self._meter.closed(opened)
                self._meter.failed(failure_reason(exc))
                if self._ended:
                    # After the last word a cut is an end (OpenAI closes without `[DONE]`).
                    log.debug(
                        "%s %s: closed after its end: %s", self._spec.kind, self._object_id, exc
                    )
                    return True
                if not self._received and self._round == 0:
                    self.ready.failed(exc)
                    return False
                resumed = await self._resumption(exc)
                if resumed is None:
                    await self._settle(exc)
                    return False
                opener = resumed

    async def _follow_up(self) -> Callable[[], Awaitable[UpstreamResponse]] | None:
        """The chain's next stream, with this relay's state reset for it; None: the end."""
        chain = self._chain
        if chain is None:
            return None
        if self._round == 0 and chain.creator_first:
            if self._held_end is not None:
                self._out.to_creator([self._held_end])
            self._out.end_creator()
        opener = await chain.next(self._tool_event)
        if opener is None:
            held, self._held_end = self._held_end, None
            if held is not None:
                await self._out.emit_batch([held])
            return None
        self._held_end = None
        await self._out.close_current()
        self._round += 1
        self._object_id = None
        self._cursor = None
        self._ended = self._received = self._resumable = self._resuming = False
        self._failures = 0
        self._outcome = "no_stream"
        return opener

    async def _tool_event(self, event: HubEvent, creator_copy: bytes | None) -> None:
        await self._out.emit_batch([event], to_creator=False)
        if creator_copy is not None:
            self._out.to_creator([HubEvent(event.name, creator_copy)])

    async def _resumption(
        self, exc: BaseException
    ) -> Callable[[], Awaitable[UpstreamResponse]] | None:
        """The opener of the upstream's continuation of a resumable stream after its last
        event, after a backoff; None when it cannot be resumed (or has failed too often)."""
        object_id, cursor, reopen = self._object_id, self._cursor, self._reopen
        if not self._resumable or object_id is None or cursor is None or reopen is None:
            return None
        if _refused(exc):
            return (
                None  # the upstream will not resume it (too old, deleted): asking again won't help
            )
        request = self._spec.resume(object_id, cursor)
        if request is None or self._failures >= self._max_resumes:
            return None
        self._failures += 1
        log.warning(
            "%s %s: upstream stream cut after %d (%s); resuming",
            self._spec.kind,
            object_id,
            cursor,
            self._scrub(str(exc)),
        )
        await asyncio.sleep(min(_RESUME_BACKOFF * 2 ** (self._failures - 1), _RESUME_BACKOFF_MAX))
        self._resuming = True
        path, query = request
        return functools.partial(reopen, path, query)

    async def _pump(self, opener: Callable[[], Awaitable[UpstreamResponse]], opened: float) -> None:
        meter = self._meter
        stream = EventStream(opener, max_event_bytes=self._max_event_bytes)
        async with stream:
            if self._request_id is None:
                self._request_id = stream.response.headers.get("x-request-id")
            while batch := await stream.read_batch():
                self._received = True
                events: list[HubEvent] = []
                sampled = meter.batch(opened, len(batch))
                for sse in batch:
                    typed, seen = self._spec.decode(sse)
                    if typed is None:
                        log.warning(
                            "%s %s: relaying an undecodable event", self._spec.kind, self._object_id
                        )
                    if seen.cursor is not None:
                        last = self._cursor
                        if self._resuming and last is not None and seen.cursor <= last:
                            continue  # already relayed before the cut
                        self._cursor = seen.cursor
                        self._failures = 0
                    if seen.resumable:
                        self._resumable = True
                    if seen.end:
                        self._ended = True
                        self._outcome = "ended"
                    if self._object_id is None and seen.object_id is not None:
                        self._known(seen.object_id)
                    event = HubEvent(sse.event, sse.data_bytes, typed)
                    chain = self._chain
                    if chain is not None and typed is not None:
                        chain.observe(typed)
                        if seen.end and chain.holds(typed):
                            self._held_end = event
                            continue
                    events.append(event)
                await self._emit(events)
                meter.delivered(sampled)
                await asyncio.sleep(0)
            meter.closed(opened)
            if not self._ended:
                raise StreamTruncated(
                    last_status=None,
                    run_id=self._object_id,
                    thread_id=None,
                    partial_event=stream.partial_event,
                )

    def _known(self, object_id: str) -> None:
        self._object_id = object_id
        if self._round == 0:
            # The start is resolved once the first batch is published (``_emit``): a subscriber
            # the creator's head sends to another node then finds the channel there.
            self._out.own = self._spec.channel(object_id)
        else:
            self._out.current = self._spec.channel(object_id)

    def _resolve_start(self) -> None:
        if not self.ready.done:
            self.ready.started(StreamStart(object_id=self._object_id, request_id=self._request_id))

    async def _emit(self, events: list[HubEvent]) -> None:
        if self._object_id is None and len(self._held) + len(events) <= _MAX_HELD_EVENTS:
            self._held.extend(events)
            return
        if not self._owning and self._round == 0:
            await self._own()
        held, self._held = self._held, []
        await self._out.emit_batch([*held, *events])
        if self._round == 0 and self._object_id is not None:
            self._resolve_start()

    async def _settle(self, exc: BaseException, *, reason: str | None = None) -> None:
        """End a stream that cannot be continued: reconciled when possible, else lost."""
        reconcile, object_id = self._reconcile, self._object_id
        found = None
        if reconcile is not None and object_id is not None:
            log.warning(
                "%s %s: upstream stream cut after %s (%s); polling its end",
                self._spec.kind,
                object_id,
                self._cursor,
                self._scrub(str(exc)),
            )
            found = await reconcile(object_id, self._cursor, reason or failure_reason(exc))
        if found is not None:
            await self._emit(found.events)
            if found.ended:
                self._ended = True
                self._outcome = "recovered"
                return
        self._outcome = "upstream_lost"
        await self._lost(exc, status=found.status if found is not None else None, reason=reason)

    async def _lost(
        self, exc: BaseException, *, status: str | None = None, reason: str | None = None
    ) -> None:
        log.warning(
            "%s %s: upstream stream lost: %s",
            self._spec.kind,
            self._object_id,
            self._scrub(str(exc)),
        )
        self._resolve_start()
        reason = reason or failure_reason(exc)
        body = _Lost(
            error=_ErrorBody(
                message=f"runcast lost the upstream stream ({reason}) before its end: "
                + self._scrub(str(exc))
                + (f" (the {self._spec.kind} is {status})" if status is not None else ""),
            ),
            reason=reason,
            kind=self._spec.kind,
            id=self._object_id,
            cursor=self._cursor,
            status=status,
        )
        await self._emit([HubEvent(UPSTREAM_LOST_EVENT, _encode(body))])

    async def _finish(self, *, close: bool = True) -> None:
        if self._held:
            held, self._held = self._held, []
            await self._out.emit_batch(held)
        if not self.ready.done:
            if self._received:
                self._resolve_start()
            else:
                self.ready.failed(
                    UpstreamConnectionError("the stream relay stopped before the upstream answered")
                )
        self._out.end_creator()
        try:
            if close:
                await self._out.close_own()
            else:
                await self._out.close_current()
        finally:
            if self._chain is not None:
                await self._chain.aclose()
