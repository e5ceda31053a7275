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

This module is the pump (the hot path, ``_pump`` and ``emit``, kept here with no indirection per
event) and the owner of the stream's state. A stream cut before its last word is resumed,
reconciled or lost by functions of that state in ``settling.py``; a dead owner's stream is taken
up by ``adoption.py``.

The end. After the protocol's last word (``response.completed|failed|incomplete``, a chat
chunk's ``[DONE]``), the end of the body is a clean end, and nothing after it but a ``[DONE]`` is
relayed; an event about another object than the stream's cuts it (``deviations.py``). A body
that ends or breaks before it (a ``[DONE]`` before a Responses stream's terminal event is such a
break, and is not relayed) and cannot be resumed publishes ``runcast.upstream_lost``
(``lost.py``) to the channels and the creator: a chat stream is never retried, since a retry
regenerates and bills again. The stream's
own channel is closed once the stream is over; the channels named up front stay open for the
next stream.

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
at once and publishes and closes nothing more. Takeover (with a
:class:`~gateway.runs.protocols.ownership.StreamAdoption`): ``adoption.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from gateway.errors import StreamTruncated, UpstreamConnectionError, UpstreamError
from gateway.hub import Broker, HubEvent
from gateway.metrics import NO_METER, RunMeter
from gateway.state import Lease, LiveStream
from gateway.upstream import UpstreamResponse
from gateway.upstream.events import EventStream
from parsers.errors import RemoteProtocolError

from ..feed import CreatorFeed
from ..keeper import LeaseKeeper
from ..readiness import Readiness
from ..recovery import failure_reason, stopped_message
from .adoption import take_over
from .creator_hold import CreatorHold
from .deviations import Deviations, foreign, skipped
from .lost import OWNER_CHANGED, OWNER_LOST, UPSTREAM_LOST_EVENT, lost_event
from .ownership import StreamAdoption, StreamOwnership
from .publisher import ChannelPublisher
from .settling import resumption, settle
from .spec import Reconcile, Seen, StreamSpec
from .toolchain import ToolChain

__all__ = ["OWNER_LOST", "UPSTREAM_LOST_EVENT", "StreamRelay", "StreamStart"]

log = logging.getLogger("runcast.relay")

_MAX_HELD_EVENTS = 64
"""Events held before the stream's id is known; more means a broken upstream."""


class StreamStart(msgspec.Struct, frozen=True, kw_only=True):
    """What the creator's response head needs."""

    object_id: str | None
    upstream_headers: Mapping[str, str]
    """The first upstream response's head (see ``gateway.runs.relay.RelayStart``)."""
    channel: str | None = None
    """The stream's own channel; None when it has none (its id was reused: ``_claim``)."""


class StreamRelay:
    """One protocol stream's pump. Start it through the registry; ``run()`` is its task body.

    Its public attributes are the stream's state that the paths it hands off to read and move
    (``settling.py``, ``adoption.py``), not an interface for anyone else.
    """

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
        max_stream_bytes: int = 0,
        scrub: Callable[[str], str] = str,
        meter: RunMeter = NO_METER,
        chain: ToolChain | None = None,
        reconcile: Reconcile | None = None,
        ownership: StreamOwnership | None = None,
        adopted: StreamAdoption | None = None,
    ) -> None:
        self.spec = spec
        self.ownership = ownership
        self._adopted = adopted
        self.keeper: LeaseKeeper | None = None
        self.owning = False
        """The lease was asked for (once, whatever came of it)."""
        self._body: asyncio.Task[None] | None = None
        self.reconcile = reconcile
        self._chain = chain
        self._chain_recorded = False
        """The live record says a tool chain is under way (recorded once, at its first event)."""
        self._round = 0
        """0 for the creating request's stream, n for the n-th follow-up."""
        self._deviations = Deviations(spec.kind)
        """Events relayed untyped or dropped after the end, counted for their warnings."""
        self._open_parts: set[int] = set()
        self._finished_parts: set[int] = set()
        """The stream's parts (chat choices) not finished yet, and finished (``Seen.parts``)."""
        self._held_end: HubEvent | None = None
        """The end marker held back while the chain is expected to go on."""
        self.upstream_said: str | None = None
        """The message of the upstream's last error event (for ``runcast.upstream_lost``)."""
        self._creator_hold = (
            CreatorHold(spec) if chain is not None and not chain.creator_first else None
        )
        """The creator's copy of a round from its first tool call on (``creator_hold.py``)."""
        self._opener = opener
        self.reopen = reopen
        self._meter = meter
        self.max_resumes = max_resumes
        self.out = ChannelPublisher(broker, feed, channels)
        self.broker = broker
        if ownership is not None:
            self.keeper = LeaseKeeper(
                ownership.leases,
                ownership.live,
                ttl=ownership.ttl,
                on_lost=self._lost_lease,
                on_lease=self._new_lease,
            )
            self.out.on_fenced = self.keeper.fenced
        self._max_event_bytes = max_event_bytes
        self._max_stream_bytes = max_stream_bytes
        self._bytes_in = 0
        """Body bytes of this round's stream so far, resumptions included."""
        self.scrub = scrub
        self.ready: Readiness[StreamStart] = Readiness()
        self._upstream_headers: Mapping[str, str] = {}
        self.object_id: str | None = None
        self._unclaimed = False
        """The id is known and its channel not yet looked up (``_claim``)."""
        self._held: list[HubEvent] = []
        self.cursor: int | None = None
        self.ended = False
        self.received = False
        self.resumable = False
        self.cancelled = False
        """A cancel of the stream's object passed through this node: it is not resumed."""
        self.resuming = False
        self.failures = 0
        """Resumptions since the last new event."""
        self.resumes = 0
        """Resumptions of the current stream in all."""
        self._told_stopped = False
        """The creator was told the relay stopped on an exception (``_stopped_by``)."""
        self.outcome = "no_stream"
        """How the relay ended, for the metrics: ``ended`` (the protocol's last word),
        ``recovered`` (reconciled from the finished object), ``upstream_lost`` or ``no_stream``
        (refused, or stopped before its end)."""

    @property
    def channel(self) -> str | None:
        """The stream's own hub channel, once its id is known."""
        return self.out.own

    def stop_creator(self) -> None:
        """The gateway stops before the stream's end: the creator's response says so."""
        self.out.stop_creator()

    async def run(self) -> None:
        body = asyncio.get_running_loop().create_task(self._run())
        self._body = body
        try:
            await body
        except asyncio.CancelledError:
            task = asyncio.current_task()
            lost = self.keeper is not None and self.keeper.lost
            if not lost or (task is not None and task.cancelling()):
                raise
            # Another node took the stream over: this relay just stops.

    async def _run(self) -> None:
        opener: Callable[[], Awaitable[UpstreamResponse]] | None = self._opener
        self.outcome = "no_stream"
        ended = stopped = False
        try:
            if self._adopted is not None:
                opener = await take_over(self, self._adopted)
            while opener is not None and await self._relay_stream(opener):
                opener = await self._follow_up()
            ended = True
        except asyncio.CancelledError:
            stopped = True
            raise
        except Exception as exc:
            # Ended by other than the upstream (the shared state unreachable ...): a creator not
            # yet answered gets this failure, one answered is told.
            self._stopped_by(exc)
            self.ready.failed(exc)
            raise
        finally:
            keeper = self.keeper
            # Stopped before its end, its channels stay open: in Redis mode, holding the stream,
            # it stays live for another node to take over; in memory mode (the gateway stops)
            # the broker's shutdown tells their subscribers, instead of an end as if complete.
            handover = (
                not ended and keeper is not None and keeper.lease is not None and not keeper.lost
            )
            try:
                await self._finish(close=not (handover or (stopped and keeper is None)))
            finally:
                self._meter.finished(self.outcome)
                if keeper is not None:
                    await keeper.release(ended=ended)

    def _lost_lease(self) -> None:
        """Another node owns the stream now: publish nothing more, stop pumping. The creator's
        response ends with ``runcast.upstream_lost`` (``reason: "owner_changed"``; its
        ``error`` makes the SDK raise), as a run's creator gets ``runcast.upstream_error``."""
        self.out.stopped = True
        event = lost_event(
            "runcast: another gateway node took this stream over; follow it on its channels",
            reason=OWNER_CHANGED,
            kind=self.spec.kind,
            object_id=self.object_id,
            cursor=self.cursor,
        )
        self.out.to_creator([event])
        self.out.end_creator()
        if self._body is not None:
            self._body.cancel()

    def _stopped_by(self, exc: Exception) -> None:
        """The relay stops on ``exc`` (not the upstream's doing): a creator whose response has
        begun gets ``runcast.upstream_lost`` (its ``error`` makes the SDK raise) and its end,
        never an end as if the stream were complete; nothing after it is its."""
        if not self.ready.has_started or self._told_stopped:
            return
        self._told_stopped = True
        event = lost_event(
            stopped_message(exc, self.spec.kind),
            reason=failure_reason(exc),
            kind=self.spec.kind,
            object_id=self.object_id,
            cursor=self.cursor,
        )
        self.out.to_creator([event])
        self.out.end_creator()

    def _new_lease(self, lease: Lease) -> None:
        assert self.ownership is not None
        self.out.fence = self.ownership.leases.fence(lease)

    async def _own(self) -> None:
        """Hold the stream's lease from its id on, and record it live (Redis mode)."""
        keeper, ownership, own = self.keeper, self.ownership, self.out.own
        if keeper is None or ownership is None or own is None or self.owning:
            return
        self.owning = True
        try:
            await keeper.acquire(own, ownership.owner)
        except Exception as exc:  # the store unreachable: the stream goes on, unwatched
            log.warning("%s %s: no lease (no failover): %s", self.spec.kind, self.object_id, exc)
            return
        self.out.fence = keeper.fence
        await keeper.record("", ownership.api_key, stream=self._live_stream(ownership.stored))

    def _live_stream(self, stored: bool, *, chain: bool = False) -> LiveStream:
        assert self.object_id is not None
        return LiveStream(
            kind=self.spec.kind,
            object_id=self.object_id,
            channels=tuple(self.out.others),
            resumable=self.resumable,
            stored=stored,
            chain=chain,
        )

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
                if self.ended:
                    # After the last word a cut is an end (OpenAI closes without `[DONE]`).
                    log.debug(
                        "%s %s: closed after its end: %s", self.spec.kind, self.object_id, exc
                    )
                    return True
                if not self.received and self._round == 0:
                    self.ready.failed(exc)
                    return False
                resumed = await resumption(self, exc)
                if resumed is None:
                    await settle(self, exc)
                    return False
                opener = resumed

    async def _follow_up(self) -> Callable[[], Awaitable[UpstreamResponse]] | None:
        """The chain's next stream, with this relay's state reset for it; None: the end."""
        chain = self._chain
        if chain is None:
            return None
        if self._round == 0 and chain.creator_first:
            if self._held_end is not None:
                self.out.to_creator([self._held_end])
            self.out.end_creator()
        opener = await chain.next(self._tool_event)
        self._release_creator_hold(give=opener is None)
        if opener is None:
            held, self._held_end = self._held_end, None
            if held is not None:
                await self.out.emit_batch([held])
            return None
        self._held_end = None
        await self.out.close_current()
        self._round += 1
        self.object_id = None
        self.cursor = None
        self.ended = self.received = self.resumable = self.resuming = False
        self._open_parts.clear()
        self._finished_parts.clear()
        self.failures = self.resumes = 0
        self._bytes_in = 0
        self.outcome = "no_stream"
        return opener

    async def _tool_event(self, event: HubEvent, creator_copy: bytes | None) -> None:
        keeper, ownership = self.keeper, self.ownership
        if not self._chain_recorded and keeper is not None and ownership is not None:
            # Before the chain's first event: a node taking the stream over from here on ends
            # its channels with runcast.upstream_lost, not in silence (adoption.py).
            self._chain_recorded = True
            await keeper.record(
                "", ownership.api_key, stream=self._live_stream(ownership.stored, chain=True)
            )
        await self.out.emit_batch([event], to_creator=False)
        if creator_copy is not None:
            self.out.to_creator([HubEvent(event.name, creator_copy)])

    async def _pump(self, opener: Callable[[], Awaitable[UpstreamResponse]], opened: float) -> None:
        meter = self._meter
        stream = EventStream(
            opener,
            max_event_bytes=self._max_event_bytes,
            max_bytes=self._max_stream_bytes,
            counted=self._bytes_in,
        )
        async with stream:
            if not self._upstream_headers:
                self._upstream_headers = stream.response.headers
            done = False
            while batch := await stream.read_batch():
                self.received = True
                self._bytes_in = stream.bytes_read  # a resumption counts on from here
                events: list[HubEvent] = []
                sampled = meter.batch(opened, len(batch))
                for sse in batch:
                    typed, seen = self.spec.decode(sse)
                    if self.ended and not seen.closes:
                        # The response is over, its channel and snapshot too (deviations.py).
                        self._deviations.after_end(self.object_id, sse.event)
                        continue
                    about = seen.about
                    if about is not None and self.object_id is not None and about != self.object_id:
                        await self.emit(events)  # what came before it is this stream's
                        kind = self.spec.kind
                        raise foreign(kind, self.object_id, about, resuming=self.resuming)
                    if typed is None:
                        self._deviations.undecodable(self.object_id)
                    if seen.cursor is not None:
                        last = self.cursor
                        if self.resuming and last is not None and seen.cursor > last + 1:
                            # A resumed stream numbers its events one by one (reference §2.3):
                            # past a skip, what it left out would be lost unnoticed. Resumed
                            # again from the cursor, as after a cut.
                            await self.emit(events)
                            raise skipped(self.spec.kind, self.object_id, last, seen.cursor)
                        if last is not None and seen.cursor <= last:
                            if self.resuming:
                                continue  # already relayed before the cut
                            # Relayed as the upstream sent it, but the cursor stays the highest
                            # seen: a resumption after it, or a reconciled end, comes after all.
                        else:
                            self.cursor = seen.cursor
                            if not seen.idle:
                                self.failures = 0
                    if seen.resumable:
                        self.resumable = True
                    if seen.said is not None:
                        self.upstream_said = seen.said
                    if seen.parts:
                        self._parts(seen)
                    if seen.closes and not (seen.end or self.ended):
                        # The HTTP stream's end before the protocol's last word: a cut, and not
                        # relayed (the SDK would stop at it, before any recovered end).
                        done = True
                        break
                    if seen.end:
                        self.ended = True
                        self.outcome = "ended"
                    if self.object_id is None and seen.object_id is not None:
                        self._known(seen.object_id)
                    event = HubEvent(sse.event, sse.data_bytes, typed)
                    chain = self._chain
                    if chain is not None and typed is not None:
                        chain.observe(typed)
                    if not seen.closes:
                        events.append(event)
                        continue
                    # Nothing after it belongs to this HTTP stream; held if the chain goes on.
                    self._last_word(event, events)
                    done = True
                    break
                await self.emit(events)
                meter.delivered(sampled)
                if done:
                    break
                await asyncio.sleep(0)
            meter.closed(opened)
            if not self.ended and self._finished_parts and not self._open_parts:
                # Every part finished and the body ended: complete, only its last word missing.
                last_word = self.spec.last_word()
                if last_word is not None:
                    self.ended = True
                    self.outcome = "ended"
                    if self._chain is not None:
                        self._chain.observe(last_word.decoded)
                    events = []
                    self._last_word(last_word, events)
                    await self.emit(events)
            if not self.ended:
                raise StreamTruncated(
                    last_status=None,
                    run_id=self.object_id,
                    thread_id=None,
                    partial_event=stream.partial_event,
                    kind=self.spec.kind,
                )

    def _parts(self, seen: Seen) -> None:
        finished = self._finished_parts
        for part in seen.parts:
            if part not in finished:
                self._open_parts.add(part)
        for part in seen.finished:
            self._open_parts.discard(part)
            finished.add(part)

    def _last_word(self, event: HubEvent, events: list[HubEvent]) -> None:
        chain = self._chain
        if chain is not None and chain.holds():
            self._held_end = event
        else:
            events.append(event)

    def _known(self, object_id: str) -> None:
        self.object_id = object_id
        self._unclaimed = True

    async def _claim(self) -> None:
        """Give the stream its own channel, unless the upstream reused the id of a stream runcast
        still holds (Ollama draws chat ids from 1,000 values): its channel, history and
        subscribe tokens are that stream's, so this one gets no channel of its own."""
        self._unclaimed = False
        assert self.object_id is not None
        channel = self.spec.channel(self.object_id)
        if await self.broker.channel_info(channel) is not None:
            log.warning(
                "%s %s: the upstream reused the id of a stream runcast still holds; this one "
                "has no channel of its own",
                self.spec.kind,
                self.object_id,
            )
        elif self._round == 0:
            # The start is resolved once the first batch is published (``emit``): a subscriber
            # the creator's head sends to another node then finds the channel there.
            self.out.own = channel
        else:
            self.out.current = channel

    def resolve_start(self) -> None:
        if not self.ready.done:
            start = StreamStart(
                object_id=self.object_id,
                upstream_headers=self._upstream_headers,
                channel=self.out.own,
            )
            self.ready.started(start)

    async def emit(self, events: list[HubEvent]) -> None:
        """Publish ``events``, held while the stream's id is unknown (up to a bound)."""
        if self.object_id is None and len(self._held) + len(events) <= _MAX_HELD_EVENTS:
            self._held.extend(events)
            return
        if self._unclaimed:
            await self._claim()
        if not self.owning and self._round == 0:
            await self._own()
        held, self._held = self._held, []
        batch = [*held, *events]
        if batch:
            hold = self._creator_hold
            await self.out.emit_batch(batch, creator_copy=None if hold is None else hold.copy)
        if self._round == 0 and self.object_id is not None:
            self.resolve_start()

    def _release_creator_hold(self, *, give: bool) -> None:
        """End the hold of the creator's copy: ``give`` it what was held (the chain stops here,
        so the calls are the creator's to see), or drop it (a follow-up answers them)."""
        if self._creator_hold is not None:
            self.out.placed_to_creator(self._creator_hold.release(answered=not give))

    async def _finish(self, *, close: bool = True) -> None:
        try:
            if self._held:
                held, self._held = self._held, []
                await self.out.emit_batch(held)
        except Exception as exc:
            self._stopped_by(exc)
            raise
        finally:
            self._release_creator_hold(give=True)
            if not self.ready.done:
                if self.received:
                    self.resolve_start()
                else:
                    self.ready.failed(
                        UpstreamConnectionError(
                            "the stream relay stopped before the upstream answered"
                        )
                    )
            self.out.end_creator()
        try:
            if close:
                await self.out.close_own()
            else:
                await self.out.close_current()
        finally:
            if self._chain is not None:
                await self._chain.aclose()
