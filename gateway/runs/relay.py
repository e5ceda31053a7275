"""RunRelay: pumps one run's upstream stream(s) into the hub and its creator's response.

Theory of operation. A relay is started for each streamed run-starting call (create run, create
thread and run, submit tool outputs) and runs as a task owned by the
:class:`~gateway.runs.registry.RelayRegistry`, never by the creator's request handler: a creator
that disconnects only detaches its :class:`~gateway.runs.feed.CreatorFeed`, and the run goes on
being pumped to its subscribers.

For the events of each upstream read, in order: publish them as one batch of
``HubEvent(name, data bytes)`` to ``run:{run_id}`` and ``thread:{thread_id}`` (the hub numbers them,
one write per subscriber, and returns the seqs), then push ``id: <run seq>`` + the same events to
the creator's feed (never blocking), then yield to the loop: the creator's response writes the
batch before the next one reaches the subscribers, and a burst already buffered upstream cannot
hold the loop from other runs, health checks and new subscribers. The run id comes from the first run event; a
``thread.created`` before it (create thread and run) is held back until then so the run channel
starts with it.

``ready`` (a :class:`Readiness`, as trio's ``task_status``) is marked started when the run id is
known, so the creator's response head can carry the ids and subscribe tokens; an upstream
failure before any event (an HTTP error such as 400 "active run", a timeout) marks it failed
with the exception instead and nothing is published. The registry's ``start`` waits on it.

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

Upstream failures after the first event (:class:`~gateway.errors.StreamTruncated`, timeouts,
connection loss, an oversized event) publish ``runcast.upstream_error``
(``{"error": {...}, "reason", "last_status", "run_id", "thread_id"}``) to the channels at once.
Recovery: the relay then polls ``GET .../runs/{run_id}`` with backoff, through outages, for up to
``recovery_timeout`` (the protocol's ``recover``: ``assistants/recovery.py``, ``polling.py``).
Once the run has settled (terminal or ``requires_action``) it publishes ``runcast.recovered``,
the final messages and steps the channels missed (``assistants/missed.py``: the relay notes
every final one it relays), then the polled Run as ``thread.run.<status>``, and carries on as after a live event of that status: ``done``, or,
for a ``requires_action`` its action handler answers, the held action and its continuation. The
creator's response stays open meanwhile and gets the same events; only when the run's end cannot
be learnt does it get the ``runcast.upstream_error`` (the openai SDK raises on it) and end. The
channels' segment always ends with ``done`` (synthesized when the upstream sent none), and a run
channel is closed once its run is over (or its recovery failed). A run left at an unanswered
``requires_action`` is handed to the registry's :class:`~gateway.runs.expiry.ActionExpiry`, which
ends its channels the same way once the upstream has expired it.

Ownership. From the run id on, the relay holds the run's lease (``keeper.py``: renewed on a timer,
the run recorded as live for other nodes) and every publish carries it; if another relay takes
the run (a client's submission continuing it, or a node that found the lease lapsed), the renewal
or the broker refuses this one, its pump is cancelled at once and its creator's response ends
with ``runcast.upstream_error``. A relay started with ``adopted`` (a lease the takeover watcher
won for a dead owner's run, ``takeover.py``) recovers the run first, from what its channel already
holds, and then goes on as any relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from gateway import logs, tracing
from gateway.errors import UpstreamConnectionError, UpstreamError, UpstreamHTTPError
from gateway.hub import Broker, HubEvent
from gateway.metrics import NO_METER, Metrics
from gateway.state import (
    ActionClaims,
    Lease,
    LiveRuns,
    MemoryActionClaims,
    MemoryLiveRuns,
    MemoryRunLeases,
    MemorySubmissionMarks,
    RoundState,
    RunLeases,
    SubmissionMarks,
    ToolRounds,
)
from gateway.upstream import RunStream, StreamItem, UpstreamClient
from parsers.errors import RemoteProtocolError
from parsers.signals import GroupSeen, ItemFinal, RunSeen, StreamEnd

from .actions import ActionHandler, ActionOptions, HeldAction
from .answering import ActionAnswerer, PendingAction
from .assistants.protocol import ASSISTANTS
from .expiry import ActionExpiry
from .feed import CreatorFeed
from .keeper import LeaseKeeper
from .lifecycle import Input, Lifecycle
from .missed import FinalIds
from .protocol import RunProtocol
from .publisher import RunPublisher
from .recovery import Recovery, failure_reason, recovered_event, upstream_error_event
from .takeover import OWNER_LOST, Published, submission_unknown, unknown_event

__all__ = ["Opener", "Readiness", "RelayEnv", "RelayStart", "RunRelay"]

log = logging.getLogger("runcast.relay")

_MAX_HELD_EVENTS = 64
"""Events held before the run id is known (``thread.created``); more means a broken upstream."""

LEASE_TTL = 10.0
"""How long a relay's hold on its run lasts unless renewed (``--lease-ttl``); its keeper renews it
every third of it, events or not (``keeper.py``)."""

Opener = Callable[[], RunStream]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RelayEnv:
    """What every relay of a gateway shares (built once by the registry)."""

    broker: Broker
    upstream: UpstreamClient
    protocol: RunProtocol[Any] = ASSISTANTS
    """The upstream API the runs speak (events, continuation, recovery); its run objects pass
    through the relay unread."""
    action_handler: ActionHandler | None = None
    action_options: ActionOptions = dataclasses.field(default_factory=ActionOptions)
    recovery_timeout: float = 30.0
    on_run: Callable[[str, str | None], Awaitable[None]] | None = None
    """Called with (run id, thread id) when a relay learns its run id."""
    claims: ActionClaims = dataclasses.field(default_factory=MemoryActionClaims)
    """Which relay holds each run's pending action (see ``answering.py``)."""
    leases: RunLeases = dataclasses.field(default_factory=MemoryRunLeases)
    """Which relay owns each run: the one pumping it (a continuation takes it over)."""
    lease_ttl: float = LEASE_TTL
    live: LiveRuns = dataclasses.field(default_factory=MemoryLiveRuns)
    """The runs being pumped, which other nodes take over when their lease lapses."""
    marks: SubmissionMarks = dataclasses.field(default_factory=MemorySubmissionMarks)
    """Where runcast's submission of each run's action stands (``takeover.py``)."""
    rounds: ToolRounds | None = None
    """The tool automation's rounds, shared: a taker releases the action a dead owner was
    answering there, so that its handlers run again (None: nothing to release)."""
    expiry: ActionExpiry | None = None
    """Where a run left at an unanswered ``requires_action`` is watched until it expires."""
    metrics: Metrics | None = None
    """Where each relay's :class:`~gateway.metrics.RunMeter` records (None: nothing recorded)."""


class RelayStart(msgspec.Struct, frozen=True, kw_only=True):
    """What the creator's response head needs (ids None if the stream ended before a run event)."""

    run_id: str | None
    thread_id: str | None
    request_id: str | None


def _refused(exc: BaseException) -> bool:
    """An HTTP 400 to runcast's submission: the run does not (or no longer) accept these outputs."""
    return isinstance(exc, UpstreamHTTPError) and exc.status == 400


StartT = TypeVar("StartT")


class Readiness(Generic[StartT]):
    """A relay's start, reported once: :meth:`started` with its ids, or :meth:`failed`.

    Waiters never own the relay: one that is cancelled (a creator that leaves) leaves the relay
    running, and a failure nobody waits for is not an unretrieved exception.
    """

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._value: StartT | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def started(self, value: StartT) -> None:
        if not self.done:
            self._value = value
            self._event.set()

    def failed(self, exc: BaseException) -> None:
        if not self.done:
            self._error = exc
            self._event.set()

    async def wait(self) -> StartT:
        """The relay's start; raises the failure that came before it."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class RunRelay:
    """One run's pump. Create through the registry; ``run()`` is its task body."""

    def __init__(
        self,
        opener: Opener,
        env: RelayEnv,
        *,
        feed: CreatorFeed | None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
        owner: str = "relay",
        adopted: Lease | None = None,
    ) -> None:
        self._opener = opener
        self._protocol = env.protocol
        self._owner = owner
        self._keeper = LeaseKeeper(
            env.leases, env.live, ttl=env.lease_ttl, on_lost=self._lost, on_lease=self._fence
        )
        self._pump_task: asyncio.Task[None] | None = None
        self._adopted = adopted
        """Set: a dead owner's run, taken over (recovered, then pumped as usual)."""
        self._env = env
        self._meter = NO_METER if env.metrics is None else env.metrics.meter("assistants")
        self._handler = env.action_handler
        self._out = RunPublisher(env.broker, feed, run_id=run_id, thread_id=thread_id)
        self._out.on_fenced = self._keeper.fenced
        self._api_key = api_key
        self._headers = dict(headers or {})
        self.ready: Readiness[RelayStart] = Readiness()
        self._request_id: str | None = None
        self._held: list[HubEvent] = []
        self._batch: list[HubEvent] = []
        """The current upstream read's events, published together once it is decoded."""
        self._start_due = False
        """The run is known: resolve the start once the current batch is published."""
        self._last_status: str | None = None
        self._action: HeldAction | None = None
        """The action the run waits at, as its protocol describes it (built once per action)."""
        self._pending: PendingAction | None = None
        self._answerer = (
            None
            if self._handler is None
            else ActionAnswerer(
                self._handler,
                options=env.action_options,
                upstream=env.upstream,
                protocol=env.protocol,
                claims=env.claims,
                marks=env.marks,
                out=self._out,
                api_key=api_key,
                headers=self._headers,
                settle=functools.partial(self._settle, to_creator=True),
                scrub=self._scrub,
            )
        )
        # Started for a client's streamed submission (the only call with a run id up front):
        # the run whose pending action it takes over once the upstream accepts it.
        self._arriving = run_id if adopted is None else None
        self._saw_done = False
        self._life = Lifecycle()
        self._noted = False
        # Messages and steps whose final event reached the channels (what a recovery skips).
        self._finals = FinalIds()

    @property
    def run_id(self) -> str | None:
        return self._out.run_id

    @property
    def thread_id(self) -> str | None:
        return self._out.thread_id

    def stop_creator(self) -> None:
        """The gateway is shutting down with this run still going: the creator's response ends
        after what it was given with ``runcast.shutdown`` (called by the registry)."""
        self._out.stop_creator()

    # -- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        if self._arriving is not None:
            await self._env.claims.arriving(self._arriving)
        outcome = "shutdown"
        ended = False
        try:
            with tracing.span("runcast.relay", **{"runcast.run_id": self._arriving}):
                try:
                    pump = asyncio.get_running_loop().create_task(self._pump())
                    self._pump_task = pump
                    try:
                        await pump
                    except asyncio.CancelledError:
                        task = asyncio.current_task()
                        if not self._keeper.lost or (task is not None and task.cancelling()):
                            raise
                        self._lost_creator()
                    ended = True
                finally:
                    await self._arrived()
                    pending, self._pending = self._pending, None
                    if pending is not None:
                        assert self._answerer is not None
                        await self._answerer.drop(pending)
                    await self._finish()
                    # Cancelled (the gateway stops): the run stays live, for another node.
                    await self._keeper.release(ended=ended)
                outcome = self._outcome()
                tracing.set_attribute("runcast.outcome", outcome)
        finally:
            self._meter.finished(outcome)
        if not self._keeper.lost:
            await self._watch_expiry()

    async def _pump(self) -> None:
        if self._adopted is not None:
            stream = await self._take_over(self._adopted)
        else:
            stream = self._opener()
        while stream is not None and await self._segment(stream):
            stream = await self._answer_action() if self._pending is not None else None

    def _lost(self) -> None:
        """Another relay owns the run now: stop pumping at once (the keeper says so)."""
        if self._pump_task is not None:
            self._pump_task.cancel()

    def _fence(self, lease: Lease) -> None:
        """The keeper holds a new lease on the run (it had lapsed): publishes carry it."""
        self._out.fence = self._env.leases.fence(lease)

    def _lost_creator(self) -> None:
        """The creator's response ends as after a failed stream: the run goes on elsewhere."""
        exc = UpstreamConnectionError(
            "runcast: another gateway node took this run over; follow it on its channels"
        )
        event = upstream_error_event(
            exc,
            message=str(exc),
            last_status=self._last_status,
            run_id=self.run_id,
            thread_id=self.thread_id,
        )
        self._out.to_creator(event, None)
        self._out.end_creator()

    def _outcome(self) -> str:
        """How the relay ended, for the metrics: a terminal status, ``requires_action`` (left
        to the client), ``upstream_error`` (the end could not be learnt) or ``no_run``."""
        status = self._last_status
        if status in self._protocol.terminal_statuses or status == self._protocol.action_status:
            assert status is not None
            return status
        if self._life.broken:
            return "upstream_error"
        return "no_run" if self.run_id is None else "unknown"

    async def _arrived(self) -> None:
        arriving, self._arriving = self._arriving, None
        if arriving is not None:
            await self._env.claims.arrived(arriving)

    async def _own(self, run_id: str) -> None:
        """Hold the run's lease: this relay pumps it now (taking it from any previous one);
        every publish carries it from here on, and other nodes see the run as live."""
        if self._keeper.lease is None:
            await self._keeper.acquire(run_id, self._owner)
            self._out.fence = self._keeper.fence
            if self.thread_id is not None:
                await self._keeper.record(self.thread_id, self._api_key)

    async def _segment(self, stream: RunStream) -> bool:
        """Pump one upstream response; True when it ended cleanly."""
        # Set: this response answers runcast's own submission for that action.
        submitted = self._pending
        self._saw_done = False
        got = False
        meter = self._meter
        opened = meter.opened()
        traced = (
            tracing.span("runcast.submission", **{"runcast.run_id": self.run_id})
            if submitted is not None
            else contextlib.nullcontext()
        )
        try:
            with traced:
                async with stream:
                    if self._request_id is None:
                        self._request_id = stream.response.headers.get("x-request-id")
                    while batch := await stream.read_batch():
                        sampled = meter.batch(opened, len(batch))
                        if not got:
                            got = True
                            await self._first_item(submitted)
                            self._life.feed(Input.FIRST_EVENT)
                        for item in batch:
                            await self._on_item(item)
                        await self._emit_batch()
                        meter.delivered(sampled)
                        await asyncio.sleep(0)
        except (UpstreamError, RemoteProtocolError) as exc:
            meter.closed(opened)
            meter.failed(failure_reason(exc))
            if submitted is not None and not got and _refused(exc):
                assert isinstance(exc, UpstreamHTTPError)
                await self._rejected(submitted, exc)
            elif self._life.published:
                return await self._upstream_error(exc)
            else:
                self._life.feed(Input.STREAM_FAILED)
                self.ready.failed(exc)
            return False
        meter.closed(opened)
        self._life.feed(Input.SEGMENT_END)
        if not got:
            return False
        await self._flush_held()
        if not self._saw_done and self._pending is None:
            # A clean EOF without `done` (after a terminal status or `event: error`, spec §2.4):
            # the channels still get their end-of-segment marker.
            await self._out.emit(self._protocol.end_of_segment)
        return True

    async def _first_item(self, submitted: PendingAction | None) -> None:
        if submitted is not None:
            # The upstream accepted runcast's outputs: the held `done` is never passed on.
            self._pending = None
            assert self._answerer is not None
            await self._answerer.accepted(submitted)
        elif self._arriving is not None:
            # A client's submission was accepted: the relay answering the action must close
            # its segment before this continuation reaches the channels (answering.py).
            run_id = self._arriving
            await self._env.claims.take_over(run_id)
            await self._arrived()
            await self._own(run_id)

    async def _on_item(self, item: StreamItem) -> None:
        event = item.event
        decoded = event if item.decode_error is None else None
        hub_event = HubEvent(item.name, item.data_bytes, decoded)
        if self.run_id is not None and not self.ready.done and not self._start_due:
            # A continuation: the run id was known from the start. (A new run's start waits
            # for its first batch to be in the hub: ``_run_known``.)
            self._resolve_start()
        if item.decode_error is not None:
            log.warning("run %s: relaying undecodable event: %s", self.run_id, item.decode_error)
        sig = item.signal  # worked out once by the protocol's stream reader
        if isinstance(sig, RunSeen):
            self._last_status = sig.status
            action = None
            if sig.status == self._protocol.action_status:
                action = self._action = self._protocol.held_action(sig.run)
            if self.run_id is None:
                await self._run_known(sig)
            elif not self._noted and sig.run_id == self.run_id:
                # A continuation: the upstream accepted the submission, so the run is its thread's.
                await self._note_run(sig.group_id or self.thread_id)
            if action is not None and self._handler is not None:
                await self._hold_action(action, hub_event)
                return
        elif isinstance(sig, GroupSeen) and self.thread_id is None:
            self._out.thread_id = sig.group_id
        elif isinstance(sig, ItemFinal):
            self._finals.note(sig)
        elif isinstance(sig, StreamEnd):
            self._saw_done = True
            if self._pending is not None:
                self._pending.done = hub_event
                return
        if self.run_id is None:
            if len(self._held) < _MAX_HELD_EVENTS:
                self._held.append(hub_event)
                return
            # Too many events before any run event: stop holding, but keep their order.
            await self._flush_held()
            await self._out.emit(hub_event)
            return
        self._batch.append(hub_event)

    async def _emit_batch(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            await self._out.emit_batch(batch)
        if self._start_due:
            self._start_due = False
            self._resolve_start()

    async def _run_known(self, run: RunSeen[Any]) -> None:
        self._out.run_id = run.run_id
        logs.bind(run_id=run.run_id, thread_id=run.group_id)
        tracing.set_attribute("runcast.run_id", run.run_id)
        if run.group_id:
            tracing.set_attribute("runcast.thread_id", run.group_id)
        log.debug("relaying run %s", run.run_id)
        self._out.thread_id = run.group_id or self.thread_id
        await self._own(run.run_id)
        await self._note_run(self.thread_id)
        await self._flush_held()
        # Started once this read's batch is in the hub: a subscriber that reacts to the
        # creator's head on another node must find the run's channel in the shared log.
        self._start_due = True

    async def _note_run(self, thread_id: str | None) -> None:
        self._noted = True
        if self._env.on_run is not None and self.run_id is not None:
            await self._env.on_run(self.run_id, thread_id)

    async def _flush_held(self) -> None:
        held, self._held = self._held, []
        if held:
            await self._out.emit_batch(held)

    def _resolve_start(self) -> None:
        if not self.ready.done:
            start = RelayStart(
                run_id=self.run_id, thread_id=self.thread_id, request_id=self._request_id
            )
            self.ready.started(start)

    # -- requires_action (answering.py) ----------------------------------------------------

    async def _hold_action(
        self, action: HeldAction, hub_event: HubEvent, *, publish: bool = True
    ) -> None:
        """Publish a ``requires_action`` that the handler will answer, holding the segment
        (``publish=False``: its channels have it already)."""
        assert self._answerer is not None
        await self._emit_batch()  # what came before it in the same read
        self._pending = await self._answerer.hold(action, hub_event, publish=publish)
        self._life.feed(Input.ACTION_HELD)

    async def _answer_action(self) -> RunStream | None:
        pending = self._pending
        assert pending is not None and self._answerer is not None
        if self.thread_id is None:
            stream = None
            await self._answerer.close(pending)
        else:
            stream = await self._answerer.answer(pending, self.thread_id)
        if stream is None:
            self._pending = None
            self._life.feed(Input.CLOSED)
        else:
            self._life.feed(Input.SUBMITTED)
        return stream

    async def _rejected(self, pending: PendingAction, exc: UpstreamHTTPError) -> None:
        assert self._answerer is not None
        self._pending = None
        self._life.feed(Input.REFUSED)
        thread_id = self.thread_id or pending.action.thread_id
        status = await self._answerer.rejected(pending, exc, thread_id)
        if status is not None:
            self._last_status = status

    # -- failures --------------------------------------------------------------------------

    async def _upstream_error(self, exc: BaseException) -> bool:
        """Report a failed stream, then recover the run; True when the recovered run waits at
        a ``requires_action`` the relay answers next (the segment goes on as if live)."""
        self._life.feed(Input.STREAM_FAILED)
        log.warning("run %s: upstream stream failed: %s", self.run_id, self._scrub(str(exc)))
        self._resolve_start()
        await self._emit_batch()
        await self._flush_held()
        event = upstream_error_event(
            exc,
            message=self._scrub(str(exc)),
            last_status=self._last_status,
            run_id=self.run_id,
            thread_id=self.thread_id,
        )
        # The creator's response stays open while the run is recovered: it is told of the
        # failure only if the recovery fails (the openai SDK raises on it and stops reading).
        seq = await self._out.emit(event, to_creator=False)
        if not isinstance(exc, UpstreamHTTPError) and await self._recover(failure_reason(exc)):
            self._life.feed(Input.RECOVERED)
            if self._pending is not None:
                return True
            await self._out.emit(self._protocol.end_of_segment)
            return False
        self._life.feed(Input.GAVE_UP)
        self._out.to_creator(event, seq)
        self._out.end_creator()
        await self._out.emit(self._protocol.end_of_segment, to_creator=False)
        return False

    async def _take_over(self, lease: Lease) -> RunStream | None:
        """A dead owner's run (``takeover.py``): publish what its channels lack through its
        settled state, as a broken stream's recovery does; the stream answering its action next,
        if any."""
        self._keeper.adopt(lease)
        self._out.fence = self._keeper.fence
        run_id, thread_id = lease.run_id, self.thread_id
        assert thread_id is not None
        await self._keeper.record(thread_id, self._api_key)
        self._resolve_start()
        logs.bind(run_id=run_id, thread_id=thread_id)
        self._life.feed(Input.TAKEN_OVER)
        published = await self._protocol.published(self._env.broker, run_id)
        self._finals = published.finals
        if published.status in self._protocol.terminal_statuses:
            # The owner published the run's end: only its segment's end may be missing.
            self._last_status = published.status
            self._life.feed(Input.RECOVERED)
            if not published.done:
                await self._out.emit(self._protocol.end_of_segment)
            return None
        if await self._recover(OWNER_LOST, published):
            self._life.feed(Input.RECOVERED)
            if self._pending is not None:
                return await self._answer_action()
            await self._out.emit(self._protocol.end_of_segment)
            return None
        self._life.feed(Input.GAVE_UP)
        exc = UpstreamConnectionError(
            "runcast: the run's gateway node stopped and the run's end could not be learnt"
        )
        event = upstream_error_event(
            exc, message=str(exc), last_status=published.status, run_id=run_id, thread_id=thread_id
        )
        await self._out.emit_batch([event, self._protocol.end_of_segment])
        return None

    async def _recover(self, reason: str, published: Published | None = None) -> bool:
        """Poll the cut-off run until it settles and publish what its channels missed, then
        its settled state (``assistants/recovery.py``); False when its end could not be learnt in time.
        ``published``: a dead owner's run, whose channel holds that (``takeover.py``)."""
        run_id, thread_id, within = self.run_id, self.thread_id, self._env.recovery_timeout
        if run_id is None or thread_id is None or within <= 0:
            return False
        recovery = await self._protocol.recover(
            self._env.upstream,
            thread_id,
            run_id,
            self._finals,
            within=within,
            api_key=self._api_key,
        )
        if published is not None:
            await self._check_submission(run_id, thread_id, recovery)
        if recovery is None:
            return False
        notice = recovered_event(recovery, reason=reason, run_id=run_id, thread_id=thread_id)
        await self._out.emit_batch([notice, *recovery.missed.events])
        for event in recovery.missed.events:
            self._finals.note_published(event)
        await self._publish_settled(recovery, published)
        return True

    async def _check_submission(
        self, run_id: str, thread_id: str, recovery: Recovery | None
    ) -> None:
        """Report a dead owner's submission the run's state cannot settle (``takeover.py``)."""
        mark = await self._env.marks.get(run_id)
        status = None if recovery is None else recovery.status
        if mark is None or not submission_unknown(mark, status):
            return
        reason = (
            "the run could not be read"
            if status is None
            else f"the run ended {status} after the outputs were being submitted"
        )
        log.warning("run %s: unknown whether the tool outputs were submitted: %s", run_id, reason)
        event = unknown_event(
            run_id=run_id, thread_id=thread_id, tool_call_ids=mark.call_ids, reason=reason
        )
        await self._out.emit(event)

    async def _publish_settled(
        self, recovery: Recovery, published: Published | None = None
    ) -> None:
        """The recovered run's settled state, published as a live one would be."""
        status = recovery.status
        self._last_status = status
        event = self._protocol.settled_event(status, recovery.run)
        # An action the relay held when the stream broke is over: the upstream's answer rules.
        stale, self._pending = self._pending, None
        if stale is not None:
            assert self._answerer is not None
            await self._answerer.drop(stale)
        if status != self._protocol.action_status:
            await self._out.emit(event)
            return
        try:
            action = self._protocol.held_action(self._protocol.decode_run(recovery.run))
        except RemoteProtocolError as exc:
            log.warning("run %s: the recovered run does not decode: %s", self.run_id, exc)
            await self._out.emit(event)
            return
        self._action = action
        if self._handler is None:
            await self._out.emit(event)
        elif (
            published is not None
            and published.status == status
            and published.action_ids == action.call_ids
        ):
            # The dead owner published this very action: it is answered without repeating it.
            await self._release_round(action)
            await self._hold_action(action, event, publish=False)
        else:
            if published is not None:
                await self._release_round(action)
            await self._hold_action(action, event)

    async def _release_round(self, action: HeldAction) -> None:
        """A dead owner may have been answering this action (tool rounds say so, and would
        skip it): the run still waits at it, so it is answered again (``takeover.py``)."""
        rounds, ids = self._env.rounds, action.call_ids
        if rounds is None or not ids:
            return
        state = await rounds.get(action.run_id)
        if state.last_action == ids:
            released = RoundState(rounds=state.rounds, last_action=None)
            await rounds.swap(action.run_id, state, released)

    def _scrub(self, text: str) -> str:
        key = self._env.upstream.settings.api_key
        return text.replace(key, "***") if key else text

    async def _settle(self, *, to_creator: bool = False) -> None:
        """Poll the run until it settles and publish its final state (bounded)."""
        within = self._env.recovery_timeout
        if self.run_id is None or self.thread_id is None or within <= 0:
            return
        found = await self._protocol.poll_settled(
            self._env.upstream, self.thread_id, self.run_id, within=within, api_key=self._api_key
        )
        if found is not None:
            status, data = found
            self._last_status = status
            event = self._protocol.settled_event(status, data)
            await self._out.emit(event, to_creator=to_creator)

    async def _watch_expiry(self) -> None:
        """The run waits for a client's outputs: its channels end once the upstream expires it."""
        action, expiry, seq = self._action, self._env.expiry, self._out.run_seq()
        if (
            self._last_status != self._protocol.action_status
            or self._life.broken
            or action is None
            or action.expires_at is None
            or expiry is None
            or seq is None
            or self.thread_id is None
        ):
            return
        await expiry.watch(
            action.run_id,
            self.thread_id,
            expires_at=action.expires_at,
            seq=seq,
            api_key=self._api_key,
        )

    async def _finish(self) -> None:
        await self._emit_batch()
        if not self.ready.done:
            if self._life.published:
                self._resolve_start()
            else:
                self.ready.failed(
                    UpstreamConnectionError("the run relay stopped before the upstream answered")
                )
        self._out.end_creator()
        if self.run_id is None:
            return
        over = self._last_status in self._protocol.terminal_statuses
        if over and self._handler is not None:
            await self._handler.forget(self.run_id)
            await self._env.marks.forget(self.run_id)
        # A relay the upstream refused outright (a client's submission answered 400) published
        # nothing: the run's channel belongs to whichever relay continues it.
        if over or (self._life.broken and self._life.published):
            await self._out.close_run()
