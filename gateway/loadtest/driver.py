"""The run loop: runs started in a closed or open loop against one or two targets, into LoadStats.

One run, in order: the protocol's ``begin`` (an Assistants thread); ``subscribers_per_run``
subscribers on the run's gateway channel, opened with ``?since=0`` before the request when the
channel is known in advance (Assistants thread channels) or as soon as the response names it
(Responses, Chat: runcast's ``runcast-response-id``/``runcast-completion-id`` header with its
``runcast-subscribe-token``, else the first event carrying the id); the streamed request, read with :class:`~parsers.sse.SSEDecoder` and the
protocol's tracker to its end, then the follow-ups a tool call asks for; then the subscribers get
``idle_timeout`` to reach the run's end. Each subscriber's copy is matched to the creator's:
events missing are gaps, extra ones duplicates, and delivery lag is the subscriber's receipt
minus the creator's receipt of the same event (0 when the subscriber's copy came first); events
the creator had before the subscriber joined are counted as replayed, not timed.

Load shapes: a closed loop of ``concurrency`` virtual users (``ramp`` moves how many are
active), or with ``rate`` an open loop of arrivals (constant or Poisson gaps, ``ramp`` moves the
rate) with at most ``concurrency`` runs in flight (later arrivals are counted as dropped). With
``compare`` the same load goes to a second target at the same time, each with its own stats, in
pairs: each start is a run against both, begun together, and the added latency is measured per
pair, event by event (the target's latency of its k-th upstream event minus the compared
server's), so that a host busy at that moment delays both sides of the difference alike.

Everything is owned: each target's load runs in one task group, each run's subscribers in
another, and the whole load in a task that ``execute`` cancels on ``stop`` or at the time
limit; runs cut off that way count as ``cut``, not failed.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping

import aiohttp
import msgspec

from gateway.errors import ConfigError
from parsers.errors import RemoteProtocolError
from parsers.sse import SSEDecoder

from .protocols import PROTOCOLS, FatalLoadError, LoadProtocol, Request, RunStart, Tracker
from .settings import LoadSettings
from .shape import arrivals, level_at
from .stats import RUN_CUT, RUN_OK, LoadStats
from .subscribers import Subscriber

__all__ = ["execute", "probe_tokens", "reach_error"]

PLACEHOLDER_KEY = "runcast-loadtest"
_ERROR_BODY_BYTES = 4096
_TOKEN_HEADER = "runcast-subscribe-token"
_RAMP_RECHECK_S = 0.05
_LOOP_LAG_TICK_S = 0.1


class _TokenView(msgspec.Struct):
    token: str


_Subscribe = Callable[[str, str | None], None]
"""Opens the run's subscribers on a channel path (with the token the creator's response gave)."""

_token_decoder = msgspec.json.Decoder(_TokenView)
_encoder = msgspec.json.Encoder()


class _Failure(Exception):
    """A run failed; ``kind`` is what the report counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def reach_error(url: str, exc: BaseException) -> str:
    """One line saying why ``url`` could not be reached (no exception reprs)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # uvloop's strerror is "connect call failed (...)": the errno's text says more.
        errno = error.errno or 0
        reason = os.strerror(errno) if errno > 0 else error.strerror or str(error)
    elif isinstance(exc, TimeoutError):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return f"cannot reach {url}: {reason.rstrip('.').lower()}"


class _Run:
    """The creator's side of one run: its stream(s), timings and outcome."""

    __slots__ = ("bytes", "chars", "digests", "events", "segments", "sent", "started", "times",
                 "ttfe", "ttft")  # fmt: skip

    def __init__(self) -> None:
        self.times = array("d")
        self.digests: list[int] = []
        self.segments = array("B")
        self.events = 0
        self.bytes = 0
        self.chars = 0
        self.sent = 0.0
        self.ttfe: float | None = None
        self.ttft: float | None = None
        self.started = False
        """True once the server answered 200, i.e. the run exists and subscribers will see it."""


class TargetLoad:
    """The load against one target: its protocol, session and stats."""

    def __init__(
        self,
        settings: LoadSettings,
        session: aiohttp.ClientSession,
        root: str,
        stats: LoadStats,
        *,
        t0: float,
    ) -> None:
        self._s = settings
        self._session = session
        self.root = root
        self._v1 = root + "/v1"
        self.stats = stats
        self._t0 = t0
        self.tokens = False
        self._spoken = False
        self._protocol: LoadProtocol = PROTOCOLS[settings.protocol](
            model=settings.model, scenario=settings.scenario
        )
        # Like the openai SDK, always send a key: the simulator wants one and takes any.
        auth = {"Authorization": f"Bearer {settings.api_key or PLACEHOLDER_KEY}"}
        self._json_headers = {
            **auth,
            **self._protocol.headers,
            "Content-Type": "application/json",
        }
        self._request_timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout, connect=settings.connect_timeout
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=settings.idle_timeout
        )
        self._subscriber_seq = 0
        self.in_flight = 0

    def _second(self) -> float:
        return time.time() - self._t0

    async def _post_json(self, path: str, body: Mapping[str, object], *, v1: bool = True) -> bytes:
        url = (self._v1 if v1 else self.root) + path
        async with self._session.post(
            url,
            data=_encoder.encode(body),
            headers=self._json_headers,
            timeout=self._request_timeout,
        ) as resp:
            raw = await resp.content.read(1 << 20)
            if resp.status != 200:
                raise _Failure(f"http_{resp.status}")
            return raw

    async def prepare(self) -> None:
        """Probe the channels, then the protocol's shared setup; ConfigError in one line."""
        if self._s.subscribers_per_run:
            self.tokens = await probe_tokens(self._session, self.root, self._s.request_timeout)
            if self.tokens and self._s.api_key is None:
                raise ConfigError("the gateway requires subscribe tokens: give --api-key")
        try:
            await self._protocol.prepare(self._post_json)
        except (_Failure, msgspec.DecodeError) as exc:
            raise ConfigError(f"{self._v1} refused the load test's setup ({exc})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConfigError(reach_error(self.root, exc)) from None

    # -- one run -----------------------------------------------------------------------------

    async def measured_run(self) -> _Run | None:
        """One run, accounted in the stats; its record when it completed."""
        stats = self.stats
        stats.runs_started += 1
        stats.timeline.add(self._second(), "started")
        started = time.perf_counter()
        self.in_flight += 1
        outcome = RUN_CUT
        record: list[_Run] = []
        try:
            async with asyncio.timeout(self._s.run_timeout):
                outcome = await self._run(record)
        except _Failure as exc:
            outcome = exc.kind
        except TimeoutError:
            outcome = "timeout"
        except RemoteProtocolError:
            outcome = "protocol"
        except aiohttp.ClientPayloadError:
            outcome = "truncated"
        except aiohttp.ClientError:
            outcome = "connection"
        finally:
            self.in_flight -= 1
            stats.outcomes[outcome] += 1
            column = {RUN_OK: "completed", RUN_CUT: "cut"}.get(outcome, "failed")
            stats.timeline.add(self._second(), column)
        if outcome != RUN_OK:
            return None
        stats.run_duration.record(time.perf_counter() - started)
        return record[0]

    def _subscriber(self, channel: str, token: str | None, tracker: Tracker) -> Subscriber:
        transport = self._s.subscriber_transport
        self._subscriber_seq += 1
        websocket = transport == "ws" or (transport == "mixed" and self._subscriber_seq % 2 == 0)
        url = f"{self.root}{channel}?since=0"
        if token is not None:
            url += f"&token={token}"
        if websocket:
            url = "ws" + url.removeprefix("http")
        return Subscriber(
            self._session,
            url,
            tracker=tracker,
            websocket=websocket,
            first_segment=not self._protocol.channel_spans_run,
            connect_timeout=self._s.connect_timeout,
            idle_timeout=self._s.idle_timeout,
        )

    async def _run(self, record: list[_Run]) -> str:
        try:
            start = await self._protocol.begin(self._post_json)
        except (_Failure, msgspec.DecodeError) as exc:
            raise _Failure(f"setup_{exc}") from None
        token: str | None = None
        if self.tokens and self._s.subscribers_per_run and start.token_scope is not None:
            raw = await self._post_json("/tokens", start.token_scope, v1=False)
            token = _token_decoder.decode(raw).token
        run = _Run()
        record.append(run)
        tracker = self._protocol.tracker(start)
        subscribers: list[Subscriber] = []
        outcome = RUN_CUT
        failure: RemoteProtocolError | aiohttp.ClientError | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tasks: list[asyncio.Task[None]] = []

                def subscribe(channel: str, given: str | None) -> None:
                    for _ in range(self._s.subscribers_per_run):
                        copy = self._protocol.tracker(start)
                        sub = self._subscriber(channel, given or token, copy)
                        subscribers.append(sub)
                        tasks.append(tg.create_task(sub.run()))

                try:
                    if start.channel is not None:
                        subscribe(start.channel, None)
                        for sub in subscribers:
                            await sub.ready.wait()
                    # A task group wraps what its body raises in an ExceptionGroup: keep the
                    # run's own failure out of it and raise it once subscribers are accounted.
                    try:
                        outcome = await self._creator(start, tracker, run, subscribe)
                    except _Failure as exc:
                        outcome = exc.kind
                    except (RemoteProtocolError, aiohttp.ClientError) as exc:
                        outcome, failure = "error", exc
                    if tasks and run.started:
                        # A run that failed still ends on its channel (runcast closes it).
                        await asyncio.wait(tasks, timeout=self._s.idle_timeout)
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            self._account(run, subscribers, outcome)
        if failure is not None:
            raise failure
        return outcome

    async def _creator(
        self, start: RunStart, tracker: Tracker, run: _Run, subscribe: _Subscribe
    ) -> str:
        request: Request | None = start.request
        segment = 0
        while request is not None:
            subscribing = start.channel is None and segment == 0
            ended = await self._stream(request, tracker, run, segment, subscribing, subscribe)
            if not ended and tracker.failure is None:
                return "truncated"
            if tracker.failure is not None:
                break
            request = tracker.follow_up()
            segment += 1
        return tracker.outcome()

    async def _stream(
        self,
        request: Request,
        tracker: Tracker,
        run: _Run,
        segment: int,
        subscribing: bool,
        subscribe: _Subscribe,
    ) -> bool:
        """Read one streamed response; True when its closing event came."""
        url = self._v1 + request.path
        sent = time.perf_counter()
        if segment == 0:
            run.sent = sent  # first event and text count from the run's own request
        async with self._session.post(
            url,
            data=_encoder.encode(request.body),
            headers=self._json_headers,
            timeout=self._stream_timeout,
        ) as resp:
            if resp.status != 200:
                await resp.content.read(_ERROR_BODY_BYTES)
                if resp.status in (404, 405) and not self._spoken:
                    raise FatalLoadError(
                        f"POST {url} answered {resp.status}: the target does not speak "
                        f"--protocol {self._protocol.name}"
                    )
                raise _Failure(f"http_{resp.status}")
            self._spoken = run.started = True
            head = self._protocol.channel_header
            if subscribing and head is not None and head[0] in resp.headers:
                # runcast names the channel and its token up front: no need to wait for an event
                subscribing = False
                subscribe(head[1] + resp.headers[head[0]], resp.headers.get(_TOKEN_HEADER))
            stats = self.stats
            decoder = SSEDecoder()
            ended = False
            last_text: float | None = None
            async for chunk in resp.content.iter_any():
                run.bytes += len(chunk)
                for event in decoder.feed(chunk):
                    now = time.perf_counter()
                    run.events += 1
                    if run.ttfe is None:
                        run.ttfe = now - run.sent
                    seen = tracker.feed(event.event, event.data_bytes)
                    if seen.upstream:
                        run.times.append(now)
                        run.digests.append(hash((event.event, event.data_bytes)))
                        run.segments.append(min(segment, 255))
                        stats.event_latency.record(now - sent)
                    if seen.text:
                        run.chars += seen.text
                        if run.ttft is None:
                            run.ttft = now - run.sent
                        if last_text is not None:
                            stats.inter_delta.record(now - last_text)
                        last_text = now
                    ended = ended or seen.end
                    if subscribing and tracker.channel is not None:
                        subscribing = False
                        subscribe(tracker.channel, resp.headers.get(_TOKEN_HEADER))
            decoder.close()
        return ended

    def _account(self, run: _Run, subscribers: list[Subscriber], outcome: str) -> None:
        stats = self.stats
        second = self._second()
        stats.creator_events += run.events
        stats.creator_bytes += run.bytes
        stats.output_chars += run.chars
        stats.timeline.add(second, "events", run.events)
        stats.timeline.add(second, "chars", run.chars)
        if run.ttfe is not None:
            stats.ttfe.record(run.ttfe)
        if run.ttft is not None:
            stats.ttft.record(run.ttft)
        if outcome == RUN_OK and run.chars and run.times:
            stats.chars_per_s.record(run.chars / max(run.times[-1] - run.sent, 1e-9))
        if self._protocol.channel_spans_run:
            times, digests = run.times, run.digests
        else:
            first = [i for i, s in enumerate(run.segments) if s == 0]
            times = array("d", (run.times[i] for i in first))
            digests = [run.digests[i] for i in first]
        expected = Counter(digests)
        broken = outcome not in (RUN_OK, RUN_CUT)
        for sub in subscribers:
            stats.subscriber_events += sub.events
            stats.subscriber_bytes += sub.bytes
            if outcome == RUN_CUT:
                stats.subscribers_cut += 1
                continue
            if sub.error is None and not sub.finished and run.started:
                sub.error = "subscriber_incomplete"
            if sub.error is not None:
                if run.started:
                    broken = True
                    stats.errors[sub.error] += 1
                    stats.timeline.add(second, "subscriber_errors")
                continue
            stats.subscribers_complete += 1
            if outcome != RUN_OK:
                continue  # the creator's response stopped early; the channel went on
            got = Counter(sub.digests)
            gaps, duplicates = sum((expected - got).values()), sum((got - expected).values())
            stats.gaps += gaps
            stats.duplicates += duplicates
            if sub.digests != digests:
                broken = broken or bool(gaps or duplicates)
                continue
            for at_creator, at_sub in zip(times, sub.times, strict=True):
                if at_creator < sub.joined:
                    stats.replayed += 1  # the join, not the fan-out: not a delivery lag
                    continue
                stats.deliveries += 1
                if at_sub < at_creator:
                    stats.subscriber_first += 1
                    stats.delivery_lag.record(0.0)
                else:
                    stats.delivery_lag.record(at_sub - at_creator)
        if broken and outcome != RUN_CUT:
            stats.runs_with_errors += 1


async def probe_tokens(session: aiohttp.ClientSession, url: str, limit_s: float) -> bool:
    """Whether the thread channels of the gateway at ``url`` need a subscribe token.

    A 401 on a channel means tokens (authorisation comes before anything else, so the probe
    creates nothing); a 200 means open mode, and the probe disconnects at once.
    """
    probe = f"{url}/streams/threads/thread_loadtest_probe"
    limit = aiohttp.ClientTimeout(total=limit_s)
    try:
        async with session.get(probe, headers={"Accept": "text/event-stream"}, timeout=limit) as r:
            if r.status == 401:
                return True
            if r.status == 200:
                return False
            raise ConfigError(
                f"{probe} answered {r.status}: is the target a runcast gateway? "
                "(use --subscribers-per-run 0 for a bare API)"
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(reach_error(url, exc)) from None


# -- load shapes -------------------------------------------------------------------------------


class _Budget:
    """Run starts left (shared by every user of one target)."""

    def __init__(self, limit: int | None, deadline: float | None) -> None:
        self.left = math.inf if limit is None else limit
        self.deadline = deadline

    def claim(self) -> bool:
        if self.left <= 0:
            return False
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


class _Starts:
    """What one start of the load is: a run against the target, or with ``--compare`` a pair of
    runs begun together whose events are compared one by one."""

    def __init__(self, loads: list[TargetLoad]) -> None:
        self._loads = loads

    @property
    def in_flight(self) -> int:
        return self._loads[0].in_flight

    def drop(self) -> None:
        for load in self._loads:
            load.stats.arrivals_dropped += 1

    async def run(self) -> None:
        if len(self._loads) == 1:
            await self._loads[0].measured_run()
            return
        ours, theirs = self._loads
        async with asyncio.TaskGroup() as tg:
            mine = tg.create_task(ours.measured_run())
            other = tg.create_task(theirs.measured_run())
        a, b = mine.result(), other.result()
        if a is not None and b is not None:
            _record_pair(ours.stats, a, b)


def _record_pair(stats: LoadStats, ours: _Run, theirs: _Run) -> None:
    """Each upstream event's latency (from its run's first request) through the target minus
    the same event's through the compared server; and the same for the first event."""
    for mine, other in zip(ours.times, theirs.times, strict=False):
        stats.added_event.record((mine - ours.sent) - (other - theirs.sent))
    if ours.ttfe is not None and theirs.ttfe is not None:
        stats.added_ttfe.record(ours.ttfe - theirs.ttfe)


async def _closed_loop(
    load: _Starts, settings: LoadSettings, started: float, budget: _Budget
) -> None:
    stages = settings.stages
    users = settings.concurrency
    if stages is not None:
        users = max(1, math.ceil(max(stage.level for stage in stages)))

    async def user(index: int) -> None:
        while True:
            if stages is not None:
                while index >= level_at(stages, time.perf_counter() - started):
                    if budget.deadline is not None and time.perf_counter() >= budget.deadline:
                        return
                    await asyncio.sleep(_RAMP_RECHECK_S)
            if not budget.claim():
                return
            await load.run()

    async with asyncio.TaskGroup() as tg:
        for index in range(users):
            tg.create_task(user(index))


async def _open_loop(
    load: _Starts, settings: LoadSettings, started: float, budget: _Budget
) -> None:
    assert settings.rate is not None
    stages = settings.stages
    rate = settings.rate

    def rate_at(t: float) -> float:
        return rate if stages is None else level_at(stages, t)

    horizon = math.inf if budget.deadline is None else budget.deadline - started
    poisson = settings.arrival == "poisson"
    async with asyncio.TaskGroup() as tg:
        for offset in arrivals(rate_at, poisson=poisson, rng=random.Random(), horizon=horizon):
            # Open loop: the schedule holds whatever the target's speed (no coordinated omission).
            await asyncio.sleep(max(started + offset - time.perf_counter(), 0.0))
            if load.in_flight >= settings.concurrency:
                load.drop()
            elif budget.claim():
                tg.create_task(load.run())
            else:
                return


async def _loop_lag(stats: LoadStats) -> None:
    """How late the event loop wakes up: the generator's own saturation, seen from inside."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(_LOOP_LAG_TICK_S)
        stats.loop_lag.record(max(time.perf_counter() - before - _LOOP_LAG_TICK_S, 0.0))


async def execute(
    settings: LoadSettings,
    urls: list[str],
    *,
    stop: asyncio.Event | None = None,
    stats: list[LoadStats] | None = None,
    t0: float | None = None,
) -> list[LoadStats]:
    """Run the load against each server root in ``urls`` (the target, then ``--compare``).

    Returns one LoadStats per URL (filled in place when ``stats`` is given, so a progress display
    can read them while the load runs). ``t0`` is the wall-clock start of the timeline.
    """
    results = stats if stats is not None else [LoadStats() for _ in urls]
    t0 = time.time() if t0 is None else t0
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.connect_timeout, sock_read=settings.idle_timeout
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loads = [
            TargetLoad(settings, session, url, result, t0=t0)
            for url, result in zip(urls, results, strict=True)
        ]
        for load in loads:
            await load.prepare()
        started = time.perf_counter()
        cpu_before = time.process_time()
        limit = settings.time_limit
        deadline = None if limit is None else started + limit
        loop = _open_loop if settings.rate is not None else _closed_loop

        budget = _Budget(settings.run_limit, deadline)
        load_task = asyncio.create_task(loop(_Starts(loads), settings, started, budget))
        stopped = asyncio.create_task((stop or asyncio.Event()).wait())
        lag = asyncio.create_task(_loop_lag(results[0]))
        try:
            await asyncio.wait({load_task, stopped}, timeout=limit, return_when="FIRST_COMPLETED")
        finally:
            for task in (load_task, stopped, lag):
                task.cancel()
            await asyncio.wait({load_task, stopped, lag})
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            for result in results:
                result.elapsed = elapsed
            results[0].cpu_s = cpu
            results[0].max_cpu_fraction = cpu / elapsed if elapsed > 0 else 0.0
        if not load_task.cancelled():
            exc = load_task.exception()
            if exc is not None:
                _raise_fatal(exc)
    return results


def _raise_fatal(exc: BaseException) -> None:
    """A FatalLoadError deep in the task groups becomes one ConfigError line."""
    if isinstance(exc, BaseExceptionGroup):
        fatal, _rest = exc.split(FatalLoadError)
        if fatal is not None:
            first: BaseException = fatal
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise ConfigError(str(first)) from None
    raise exc
