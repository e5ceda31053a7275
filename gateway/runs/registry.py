"""RelayRegistry: owns every relay task, and remembers which thread each relayed run is on.

Relays are :class:`~gateway.runs.relay.RunRelay` (Assistants runs, :meth:`RelayRegistry.start`)
and any other :class:`Relay` handed to :meth:`RelayRegistry.spawn` (the Responses and Chat
streams of ``gateway.runs.protocols``).

Relays outlive the request that started them (a creator may disconnect while subscribers keep
receiving the run), so the registry, not a request handler, owns their tasks: each is tracked
from creation, its failure is logged when it ends, and :meth:`aclose` cancels and awaits every
one still running (bounded by ``shutdown_timeout``), after telling each one's creator that the
gateway is shutting down (its response ends with ``runcast.shutdown`` after what it was given),
so no creator's response outlives :meth:`aclose` or ends as if the run were over.
:meth:`wait_idle` is the graceful drain's wait for running relays (``gateway.http.drain``).
The run -> thread map (a :class:`~gateway.state.RunThreads`) lets a thread's subscribe token open
the channels of that thread's runs. It also owns the one
:class:`~gateway.runs.expiry.ActionExpiry` watcher, closed with it. The stores every gateway
process must share come in as one :class:`~gateway.state.SharedState` (in-memory by default).
With shared stores (Redis) it also owns the :class:`~gateway.runs.takeover.TakeoverWatcher`,
which starts a recovery relay (:meth:`RelayRegistry.adopt`) for each run whose owner died, and
for each Responses or Chat stream whose owner died (a :class:`StreamRelay` taking it over);
:meth:`RelayRegistry.stream_ownership` is what a creating request hands its stream's relay so
that the stream can be taken over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, Protocol

import msgspec
from redis.exceptions import RedisError

from gateway.errors import BrokerUnavailable
from gateway.hub import Broker
from gateway.metrics import Metrics
from gateway.state import Lease, LiveRun, SharedState, ToolRounds
from gateway.upstream import RunStream, UpstreamClient, UpstreamResponse

from .actions import ActionHandler, ActionOptions
from .assistants.protocol import ASSISTANTS
from .expiry import DEFAULT_GRACE, ActionExpiry
from .feed import CreatorFeed
from .protocols.chat import CHAT
from .protocols.ownership import StreamAdoption, StreamOwnership
from .protocols.relay import StreamRelay
from .protocols.responses import RESPONSES
from .protocols.responses_recovery import ResponseRecovery
from .relay import LEASE_TTL, Opener, RelayEnv, RelayStart, RunRelay
from .takeover import TakeoverWatcher

__all__ = ["Relay", "RelayRegistry", "RelayStatistics"]

log = logging.getLogger("runcast.relay")

_MAX_KNOWN_RUNS = 100_000


class RelayStatistics(msgspec.Struct, frozen=True, kw_only=True):
    active: int
    started: int
    failed: int
    known_runs: int
    awaiting_expiry: int
    """Runs left at an unanswered ``requires_action``, watched until they expire."""
    taken_over: int = 0
    """Runs whose owner died that this process took over (Redis mode)."""


class Relay(Protocol):
    """What the registry owns: a task body, and a way to end its creator's response early."""

    def run(self) -> Coroutine[Any, Any, None]: ...

    def stop_creator(self) -> None: ...


def _no_stream() -> RunStream:
    raise AssertionError("a relay taking a run over opens no stream of its own")


def _no_opener() -> Awaitable[UpstreamResponse]:
    raise AssertionError("a relay taking a stream over only resumes it")


class RelayRegistry:
    """Starts relays as owned tasks; ``aclose()`` stops them all."""

    def __init__(
        self,
        broker: Broker,
        upstream: UpstreamClient,
        *,
        action_handler: ActionHandler | None = None,
        action_options: ActionOptions | None = None,
        recovery_timeout: float = 30.0,
        shutdown_timeout: float = 10.0,
        max_known_runs: int = _MAX_KNOWN_RUNS,
        expiry_grace: float = DEFAULT_GRACE,
        lease_ttl: float = LEASE_TTL,
        rounds: ToolRounds | None = None,
        metrics: Metrics | None = None,
        state: SharedState | None = None,
    ) -> None:
        if state is None:
            state = SharedState.memory(max_runs=max_known_runs)
        self._expiry = ActionExpiry(
            broker,
            upstream,
            protocol=ASSISTANTS,
            claims=state.claims,
            schedule=state.schedule,
            leases=state.leases,
            grace=expiry_grace,
            on_over=None if action_handler is None else action_handler.forget,
        )
        self._env = RelayEnv(
            broker=broker,
            upstream=upstream,
            action_handler=action_handler,
            action_options=action_options or ActionOptions(),
            recovery_timeout=recovery_timeout,
            on_run=self._note_run,
            claims=state.claims,
            leases=state.leases,
            lease_ttl=lease_ttl,
            live=state.live,
            marks=state.marks,
            rounds=rounds,
            expiry=self._expiry,
            metrics=metrics,
        )
        self._takeover: TakeoverWatcher | None = None
        self._state = state
        if state.shared:
            self._takeover = TakeoverWatcher(
                state.live, state.leases, self.adopt, ttl=lease_ttl, owner="takeover"
            )
            self._takeover.start()
        self._shutdown_timeout = shutdown_timeout
        self._relays: dict[asyncio.Task[None], Relay] = {}
        self._threads = state.threads
        self._conversations = state.conversations
        self._started = 0
        self._stream_owners = 0
        self._failed = 0
        self._closed = False

    async def start(
        self,
        opener: Opener,
        *,
        feed: CreatorFeed | None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
    ) -> RelayStart:
        """Start a relay for the stream ``opener`` opens, owned by the registry, and wait until
        it knows its run (trio's ``nursery.start``): a failure before the upstream's first event
        is raised here. A caller cancelled meanwhile leaves the relay running."""
        if self._closed:
            raise RuntimeError("relay registry is closed")
        relay = RunRelay(
            opener,
            self._env,
            feed=feed,
            api_key=api_key,
            headers=headers,
            run_id=run_id,
            thread_id=thread_id,
            owner=f"relay-{self._started + 1}",
        )
        # The run -> thread map is not told the caller's ids (a submission names any run under
        # any thread): the relay reports them from the upstream's own run events (``on_run``).
        self.spawn(relay, name=f"runcast-relay-{run_id or 'new'}")
        return await relay.ready.wait()

    def stream_ownership(self, *, api_key: str | None, stored: bool) -> StreamOwnership | None:
        """What a Responses or Chat stream's relay needs to hold its stream under a lease and
        record it live (None in memory mode: no other node could take it over)."""
        if not self._state.shared:
            return None
        self._stream_owners += 1
        env = self._env
        return StreamOwnership(
            leases=env.leases,
            live=env.live,
            ttl=env.lease_ttl,
            owner=f"stream-{self._stream_owners}",
            api_key=api_key,
            stored=stored,
        )

    def adopt(self, run: LiveRun, lease: Lease) -> None:
        """Take over ``run``, whose owner died, under ``lease`` (won by the takeover watcher):
        a relay recovers it and carries it on (``takeover.py``)."""
        if self._closed:
            return  # the lease lapses again and another node takes the run
        if run.stream is not None:
            self._adopt_stream(run, lease)
            return
        relay = RunRelay(
            _no_stream,
            self._env,
            feed=None,
            api_key=run.api_key,
            run_id=run.run_id,
            thread_id=run.thread_id,
            owner=f"taker-{self._started + 1}",
            adopted=lease,
        )
        self.spawn(relay, name=f"runcast-takeover-{run.run_id}")

    def _adopt_stream(self, run: LiveRun, lease: Lease) -> None:
        """A dead owner's Responses or Chat stream: a :class:`StreamRelay` in takeover mode."""
        stream = run.stream
        assert stream is not None
        env, api_key = self._env, run.api_key
        upstream = env.upstream
        ownership = self.stream_ownership(api_key=api_key, stored=stream.stored)
        response = stream.kind == "response"

        def reopen(path: str, query: str) -> Awaitable[UpstreamResponse]:
            return upstream.open_stream("GET", path, query=query, api_key=api_key, headers=None)

        key = upstream.settings.api_key
        relay = StreamRelay(
            RESPONSES if response else CHAT,
            _no_opener,
            env.broker,
            feed=None,
            channels=list(stream.channels),
            reopen=reopen,
            max_event_bytes=upstream.settings.max_event_bytes,
            max_stream_bytes=upstream.settings.max_stream_bytes,
            scrub=(lambda text: text.replace(key, "***")) if key else str,
            reconcile=ResponseRecovery(upstream, within=env.recovery_timeout, api_key=api_key)
            if response and stream.stored
            else None,
            ownership=ownership,
            adopted=StreamAdoption(lease=lease, stream=stream),
        )
        self.spawn(relay, name=f"runcast-takeover-{run.run_id}")

    def spawn(self, relay: Relay, *, name: str) -> None:
        """Start pumping ``relay`` as a task this registry owns."""
        if self._closed:
            raise RuntimeError("relay registry is closed")
        task = asyncio.create_task(relay.run(), name=name)
        self._relays[task] = relay
        task.add_done_callback(self._task_done)
        self._started += 1

    @property
    def answers_actions(self) -> bool:
        """Whether runcast answers ``requires_action`` itself (an action handler is configured)."""
        return self._env.action_handler is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has begun: no relay starts any more."""
        return self._closed

    async def thread_of(self, run_id: str) -> str | None:
        """The thread of a run that passed through runcast (None if unknown)."""
        return await self._threads.thread_of(run_id)

    async def conversation_of(self, response_id: str) -> str | None:
        """The conversation of a response that passed through runcast naming one (None if
        unknown)."""
        return await self._conversations.thread_of(response_id)

    async def note_conversation(self, response_id: str, conversation_id: str) -> None:
        """``response_id`` belongs to ``conversation_id`` (its token opens the response)."""
        await self._conversations.note(response_id, conversation_id)

    async def recent_runs(self, limit: int) -> list[tuple[str, str | None]]:
        """Up to ``limit`` runs that passed through runcast, newest first: (run id, thread id)."""
        return await self._threads.recent(limit)

    def cancelled(self, object_id: str) -> None:
        """The upstream accepted a cancel of ``object_id`` (a response): its stream, if this
        node relays it, ends without being resumed."""
        for relay in self._relays.values():
            if isinstance(relay, StreamRelay) and relay.object_id == object_id:
                relay.cancelled = True

    def live_streams(self) -> list[str]:
        """The own channels of the Responses and Chat streams being relayed, oldest first."""
        return [
            channel
            for relay in self._relays.values()
            if isinstance(relay, StreamRelay) and (channel := relay.channel) is not None
        ]

    async def _note_run(self, run_id: str, thread_id: str | None) -> None:
        # A relay continuing the run (a client's submission accepted) reports how it ends.
        await self._expiry.forget(run_id)
        await self._threads.note(run_id, thread_id)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._relays.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._failed += 1
        if isinstance(exc, RedisError | BrokerUnavailable):
            # The cluster's Redis is away (Redis mode): the operator's to fix. The creator was
            # told (503 broker_unavailable, or its stream's error event: the relays' _stopped_by).
            log.warning("run relay %s stopped: Redis unreachable: %s", task.get_name(), exc)
        else:
            log.error("run relay %s failed", task.get_name(), exc_info=exc)

    async def wait_idle(self) -> None:
        """Wait until no relay runs, counting relays started meanwhile (the caller bounds it)."""
        while self._relays:
            # A done task's _task_done runs before wait() returns (callbacks run in order).
            await asyncio.wait(list(self._relays))

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            active=len(self._relays),
            started=self._started,
            failed=self._failed,
            known_runs=len(self._threads),
            awaiting_expiry=len(self._expiry),
            taken_over=0 if self._takeover is None else self._takeover.taken,
        )

    async def aclose(self) -> None:
        """Cancel every running relay and wait for them (bounded; idempotent).

        A cancelled relay publishes nothing more and leaves its run's channels open: they are
        the broker's to end (``shutdown``), after this. Its creator is told first, so the notice
        follows everything it was given. A second call returns at once: the first one waited
        for the relays (a relay that outlived that bound is stuck, and is left to the process's
        exit).
        """
        if self._closed:
            return
        self._closed = True
        if self._takeover is not None:
            await self._takeover.aclose()
        relays = dict(self._relays)
        for task, relay in relays.items():
            relay.stop_creator()
            task.cancel()
        if relays:
            _, pending = await asyncio.wait(relays, timeout=self._shutdown_timeout)
            for task in pending:
                # Its creator was told already (stop_creator): nothing more reaches it.
                log.error(
                    "run relay %s did not stop within %gs", task.get_name(), self._shutdown_timeout
                )
        await self._expiry.aclose()
