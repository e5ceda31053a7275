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
hold the loop from other runs, health checks and new subscribers. The run id comes from the
first run event; a ``thread.created`` before it (create thread and run) is held back until then so the run channel
starts with it.

``ready`` (a :class:`~gateway.runs.readiness.Readiness`, as trio's ``task_status``) is marked
started once the run id is known and the read that brought it is in the hub, so the creator's
response head can carry the ids and subscribe tokens, and a subscriber who reacts to it on
another node finds the run's channel in the shared log; an upstream failure before any event (an HTTP error such as 400 "active run", a timeout)
marks it failed with the exception instead and nothing is published. The registry's ``start``
waits on it.

This module is the pump (the hot path, ``_segment``, ``_on_item`` and ``emit_batch``, kept
here with no indirection per event) and the owner of the run's state. The paths it hands off to
are functions of that state, one module each: a ``requires_action`` it holds and answers, and a
run left at one (``holding.py``: segments); an upstream failure after the first event and the
run's recovery (``settling.py``); a dead owner's run taken over (``adoption.py``).

Ownership. From the run id on, the relay holds the run's lease (``keeper.py``: renewed on a timer,
the run recorded as live for other nodes) and every publish carries it; if another relay takes
the run (a client's submission continuing it, or a node that found the lease lapsed), the renewal
or the broker refuses this one, its pump is cancelled at once and its creator's response ends
with ``runcast.upstream_error``. A relay started with ``adopted`` (a lease the takeover watcher
won for a dead owner's run, ``takeover.py``) recovers the run first, from what its channel already
holds, and then goes on as any relay (``adoption.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from gateway import logs, tracing
from gateway.errors import UpstreamConnectionError, UpstreamError, UpstreamHTTPError
from gateway.hub import HubEvent
from gateway.metrics import NO_METER
from gateway.state import Lease
from gateway.upstream import RunStream, StreamItem
from parsers.errors import RemoteProtocolError
from parsers.signals import GroupSeen, ItemFinal, RunSeen, StreamEnd

from .actions import HeldAction
from .adoption import take_over
from .answering import ActionAnswerer, PendingAction
from .channels import run_channel
from .env import LEASE_TTL, RelayEnv
from .feed import CreatorFeed
from .holding import answer_action, drop_pending, hold_action, refused, rejected, watch_expiry
from .keeper import LeaseKeeper
from .lifecycle import Input, Lifecycle
from .missed import FinalIds
from .publisher import RunPublisher
from .readiness import Readiness
from .recovery import failure_reason, stopped_message, upstream_error_event
from .settling import settle, upstream_error

__all__ = ["LEASE_TTL", "Opener", "Readiness", "RelayEnv", "RelayStart", "RunRelay"]

log = logging.getLogger("runcast.relay")

_MAX_HELD_EVENTS = 64
"""Events held before the run id is known (``thread.created``); more means a broken upstream."""

Opener = Callable[[], RunStream]


class RelayStart(msgspec.Struct, frozen=True, kw_only=True):
    """What the creator's response head needs (ids None if the stream ended before a run event)."""

    run_id: str | None
    thread_id: str | None
    upstream_headers: Mapping[str, str]
    """The first upstream response's head (the caller gets its request id, rate-limit and
    processing headers, as from the proxy)."""


class RunRelay:
    """One run's pump. Create through the registry; ``run()`` is its task body.

    Its public attributes are the run's state that the paths it hands off to read and move
    (``holding.py``, ``settling.py``, ``adoption.py``), not an interface for anyone else.
    """

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
        self.protocol = env.protocol
        self._owner = owner
        self.keeper = LeaseKeeper(
            env.leases, env.live, ttl=env.lease_ttl, on_lost=self._lost, on_lease=self._fence
        )
        self._pump_task: asyncio.Task[None] | None = None
        self._adopted = adopted
        """Set: a dead owner's run, taken over (recovered, then pumped as usual)."""
        self._undecodable = 0
        """Events relayed untyped so far (logged at the 1st, 10th, 100th...)."""
        self.env = env
        self._meter = NO_METER if env.metrics is None else env.metrics.meter("assistants")
        self.handler = env.action_handler
        self.out = RunPublisher(env.broker, feed, run_id=run_id, thread_id=thread_id)
        self.out.on_fenced = self.keeper.fenced
        self.api_key = api_key
        self._headers = dict(headers or {})
        self.ready: Readiness[RelayStart] = Readiness()
        self._upstream_headers: Mapping[str, str] = {}
        self._held: list[HubEvent] = []
        self._batch: list[HubEvent] = []
        """The current upstream read's events, published together once it is decoded."""
        self._start_due = False
        """The run is known: resolve the start once the current batch is published."""
        self.last_status: str | None = None
        self.action: HeldAction | None = None
        """The action the run waits at, as its protocol describes it (built once per action)."""
        self.pending: PendingAction | None = None
        self.answerer = (
            None
            if self.handler is None
            else ActionAnswerer(
                self.handler,
                options=env.action_options,
                upstream=env.upstream,
                protocol=env.protocol,
                claims=env.claims,
                marks=env.marks,
                out=self.out,
                api_key=api_key,
                headers=self._headers,
                settle=functools.partial(settle, self, to_creator=True),
                scrub=self.scrub,
            )
        )
        # Started for a client's streamed submission (the only call with a run id up front):
        # the run whose pending action it takes over once the upstream accepts it.
        self._arriving = run_id if adopted is None else None
        self._saw_done = False
        self._told_stopped = False
        """The creator was told the relay stopped on an exception (``_stopped_by``)."""
        self.life = Lifecycle()
        self._noted = False
        # Messages and steps whose final event reached the channels (what a recovery skips).
        self.finals = FinalIds()

    @property
    def run_id(self) -> str | None:
        return self.out.run_id

    @property
    def thread_id(self) -> str | None:
        return self.out.thread_id

    def stop_creator(self) -> None:
        """The gateway is shutting down with this run still going: the creator's response ends
        after what it was given with ``runcast.shutdown`` (called by the registry)."""
        self.out.stop_creator()

    # -- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            # Its callbacks are this relay's (scrub, settle): a cycle through it, dropped so a
            # finished run is freed by reference counting (the keeper's likewise, on release).
            self.answerer = None

    async def _run(self) -> None:
        if self._arriving is not None:
            await self.env.claims.arriving(self._arriving)
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
                        if not self.keeper.lost or (task is not None and task.cancelling()):
                            raise
                        self._lost_creator()
                    except Exception as exc:
                        # Ended by other than the upstream (the shared state unreachable ...):
                        # a creator not yet answered gets this failure, one answered is told.
                        self._stopped_by(exc)
                        self.ready.failed(exc)
                        raise
                    ended = True
                finally:
                    await self._arrived()
                    await drop_pending(self)
                    await self._finish()
                    # Cancelled (the gateway stops): the run stays live, for another node.
                    await self.keeper.release(ended=ended)
                outcome = self._outcome()
                tracing.set_attribute("runcast.outcome", outcome)
        finally:
            self._meter.finished(outcome)
        if not self.keeper.lost:
            await watch_expiry(self)

    async def _pump(self) -> None:
        if self._adopted is not None:
            stream = await take_over(self, self._adopted)
        else:
            stream = self._opener()
        while stream is not None and await self._segment(stream):
            stream = await answer_action(self) if self.pending is not None else None

    def _lost(self) -> None:
        """Another relay owns the run now: stop pumping at once (the keeper says so)."""
        if self._pump_task is not None:
            self._pump_task.cancel()

    def _fence(self, lease: Lease) -> None:
        """The keeper holds a new lease on the run (it had lapsed): publishes carry it."""
        self.out.fence = self.env.leases.fence(lease)

    def _lost_creator(self) -> None:
        """The creator's response ends as after a failed stream: the run goes on elsewhere."""
        exc = UpstreamConnectionError(
            "runcast: another gateway node took this run over; follow it on its channels"
        )
        event = upstream_error_event(
            exc,
            message=str(exc),
            last_status=self.last_status,
            run_id=self.run_id,
            thread_id=self.thread_id,
        )
        self.out.to_creator(event, None)
        self.out.end_creator()

    def _stopped_by(self, exc: Exception) -> None:
        """The relay stops on ``exc`` (not the upstream's doing): a creator whose response has
        begun gets ``runcast.upstream_error`` (its ``error`` makes the SDK raise) and its end,
        never an end as if the run were over; what is published after it is not its."""
        if not self.ready.has_started or self._told_stopped:
            return
        self._told_stopped = True
        event = upstream_error_event(
            exc,
            message=stopped_message(exc, "run"),
            last_status=self.last_status,
            run_id=self.run_id,
            thread_id=self.thread_id,
        )
        self.out.to_creator(event, None)
        self.out.end_creator()

    def _outcome(self) -> str:
        """How the relay ended, for the metrics: a terminal status, ``requires_action`` (left
        to the client), ``upstream_error`` (the end could not be learnt) or ``no_run``."""
        status = self.last_status
        if status in self.protocol.terminal_statuses or status == self.protocol.action_status:
            assert status is not None
            return status
        if self.life.broken:
            return "upstream_error"
        return "no_run" if self.run_id is None else "unknown"

    async def _arrived(self) -> None:
        arriving, self._arriving = self._arriving, None
        if arriving is not None:
            await self.env.claims.arrived(arriving)

    async def _own(self, run_id: str) -> None:
        """Hold the run's lease: this relay pumps it now (taking it from any previous one);
        every publish carries it from here on, and other nodes see the run as live."""
        if self.keeper.lease is None:
            await self.keeper.acquire(run_id, self._owner)
            self.out.fence = self.keeper.fence
            if self.thread_id is not None:
                await self.keeper.record(self.thread_id, self.api_key)

    # -- the pump --------------------------------------------------------------------------

    async def _segment(self, stream: RunStream) -> bool:
        """Pump one upstream response; True when it ended cleanly."""
        # Set: this response answers runcast's own submission for that action.
        submitted = self.pending
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
                    if not self._upstream_headers:
                        self._upstream_headers = stream.response.headers
                    while batch := await stream.read_batch():
                        sampled = meter.batch(opened, len(batch))
                        if not got:
                            got = True
                            await self._first_item(submitted)
                            self.life.feed(Input.FIRST_EVENT)
                        for item in batch:
                            await self._on_item(item)
                        await self.emit_batch()
                        meter.delivered(sampled)
                        await asyncio.sleep(0)
        except (UpstreamError, RemoteProtocolError) as exc:
            meter.closed(opened)
            meter.failed(failure_reason(exc))
            if submitted is not None and not got and refused(exc):
                assert isinstance(exc, UpstreamHTTPError)
                await rejected(self, submitted, exc)
            elif self.life.published:
                return await upstream_error(self, exc)
            else:
                self.life.feed(Input.STREAM_FAILED)
                self.ready.failed(exc)
            return False
        meter.closed(opened)
        self.life.feed(Input.SEGMENT_END)
        if not got:
            return False
        await self.flush_held()
        if not self._saw_done and self.pending is None:
            # A clean EOF without `done` (after a terminal status or `event: error`, spec §2.4):
            # the channels still get their end-of-segment marker.
            await self.out.emit(self.protocol.end_of_segment)
        return True

    async def _first_item(self, submitted: PendingAction | None) -> None:
        if submitted is not None:
            # The upstream accepted runcast's outputs: the held `done` is never passed on.
            self.pending = None
            assert self.answerer is not None
            await self.answerer.accepted(submitted)
        elif self._arriving is not None:
            # A client's submission was accepted: the relay answering the action must close
            # its segment before this continuation reaches the channels (answering.py).
            run_id = self._arriving
            await self.env.claims.take_over(run_id)
            await self._arrived()
            await self._own(run_id)

    async def _on_item(self, item: StreamItem) -> None:
        event = item.event
        decoded = event if item.decode_error is None else None
        hub_event = HubEvent(item.name, item.data_bytes, decoded)
        if self.run_id is not None and not self.ready.done and not self._start_due:
            # A continuation: the run id was known from the start. (A new run's start waits
            # for its first batch to be in the hub: ``_run_known``.)
            self.resolve_start()
        if item.decode_error is not None:
            self._undecodable += 1
            if logs.worth_a_line(self._undecodable):
                log.warning(
                    "run %s: relaying undecodable event: %s (%d so far)",
                    self.run_id,
                    item.decode_error,
                    self._undecodable,
                )
        sig = item.signal  # worked out once by the protocol's stream reader
        if isinstance(sig, RunSeen):
            self._check_run(sig)
            self.last_status = sig.status
            action = None
            if sig.status == self.protocol.action_status:
                action = self.action = self.protocol.held_action(sig.run)
            if self.run_id is None:
                await self._run_known(sig)
            elif not self._noted and sig.run_id == self.run_id:
                # A continuation: the upstream accepted the submission, so the run is its thread's.
                await self._note_run(sig.group_id or self.thread_id)
            if action is not None and self.handler is not None:
                await hold_action(self, action, hub_event)
                return
        elif isinstance(sig, GroupSeen):
            if self.thread_id is None:
                self.out.thread_id = sig.group_id
            elif sig.group_id != self.thread_id:
                raise RemoteProtocolError(
                    f"the upstream created thread {sig.group_id} in a run of thread "
                    f"{self.thread_id}"
                )
        elif isinstance(sig, ItemFinal):
            self.finals.note(sig)
        elif isinstance(sig, StreamEnd):
            self._saw_done = True
            if self.pending is not None:
                self.pending.done = hub_event
                return
        if self.run_id is None:
            if len(self._held) < _MAX_HELD_EVENTS:
                self._held.append(hub_event)
                return
            # Too many events before any run event: stop holding, but keep their order.
            await self.flush_held()
            await self.out.emit(hub_event)
            return
        self._batch.append(hub_event)

    async def emit_batch(self) -> None:
        """Publish the current read's events, then resolve the start if it is due."""
        batch, self._batch = self._batch, []
        if batch:
            await self.out.emit_batch(batch)
        if self._start_due:
            self._start_due = False
            self.resolve_start()

    def _check_run(self, run: RunSeen[Any]) -> None:
        """Refuse a run event of another thread or run than this relay's (once known)."""
        if (
            run.group_id is not None
            and self.thread_id is not None
            and run.group_id != self.thread_id
        ):
            # The caller named the thread (its URL, or the stream's ``thread.created``): a run
            # said to be another's would be published to that thread's channel, and its
            # creator handed that thread's id and subscribe token.
            raise RemoteProtocolError(
                f"the upstream named thread {run.group_id} for a run of thread {self.thread_id}"
            )
        if self.run_id is not None and run.run_id != self.run_id:
            # A stream and its continuations are one run's: another run's status, action or
            # end taken as this one's would be published on its channels, and its action
            # answered by runcast's tools under this caller's thread.
            raise RemoteProtocolError(
                f"the upstream's stream of run {self.run_id} named another run ({run.run_id})"
            )

    async def _run_known(self, run: RunSeen[Any]) -> None:
        if await self.env.broker.channel_info(run_channel(run.run_id)) is not None:
            # Only this relay creates a run's channel, so the upstream named the new run with
            # the id of one runcast holds: taking it would merge two callers' runs into one
            # channel and move the other run to this caller's thread (and its tokens).
            raise RemoteProtocolError(
                f"the upstream gave a new run the id of a run runcast holds ({run.run_id})"
            )
        self.out.run_id = run.run_id
        logs.bind(run_id=run.run_id, thread_id=run.group_id)
        tracing.set_attribute("runcast.run_id", run.run_id)
        if run.group_id:
            tracing.set_attribute("runcast.thread_id", run.group_id)
        log.debug("relaying run %s", run.run_id)
        self.out.thread_id = run.group_id or self.thread_id
        await self._own(run.run_id)
        await self._note_run(self.thread_id)
        await self.flush_held()
        # Started once this read's batch is in the hub: a subscriber that reacts to the
        # creator's head on another node must find the run's channel in the shared log.
        self._start_due = True

    async def _note_run(self, thread_id: str | None) -> None:
        self._noted = True
        if self.env.on_run is not None and self.run_id is not None:
            await self.env.on_run(self.run_id, thread_id)

    async def flush_held(self) -> None:
        """Publish the events held back before the run id was known."""
        held, self._held = self._held, []
        if held:
            await self.out.emit_batch(held)

    def resolve_start(self) -> None:
        if not self.ready.done:
            start = RelayStart(
                run_id=self.run_id,
                thread_id=self.thread_id,
                upstream_headers=self._upstream_headers,
            )
            self.ready.started(start)

    def scrub(self, text: str) -> str:
        """``text`` without the upstream key (for error texts)."""
        key = self.env.upstream.settings.api_key
        return text.replace(key, "***") if key else text

    # -- the end ---------------------------------------------------------------------------

    async def _finish(self) -> None:
        try:
            await self.emit_batch()
        except Exception as exc:
            self._stopped_by(exc)
            raise
        finally:
            if not self.ready.done:
                if self.life.published:
                    self.resolve_start()
                else:
                    self.ready.failed(
                        UpstreamConnectionError(
                            "the run relay stopped before the upstream answered"
                        )
                    )
            self.out.end_creator()
        if self.run_id is None:
            return
        over = self.last_status in self.protocol.terminal_statuses
        if over and self.handler is not None:
            await self.handler.forget(self.run_id)
            await self.env.marks.forget(self.run_id)
        # A relay the upstream refused outright (a client's submission answered 400) published
        # nothing: the run's channel belongs to whichever relay continues it.
        if over or (self.life.broken and self.life.published):
            await self.out.close_run()
