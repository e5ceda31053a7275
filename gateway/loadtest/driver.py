"""One run against one target, measured into that target's LoadStats (``TargetLoad``).

One run, in order: the protocol's ``begin`` (an Assistants thread); ``subscribers_per_run``
subscribers on the run's gateway channel, opened with ``?since=0`` before the request when the
channel is known in advance (Assistants thread channels) or as soon as the response names it
(Responses, Chat: runcast's ``runcast-response-id``/``runcast-completion-id`` header with its
``runcast-subscribe-token``, else the first event carrying the id); the streamed request, read
with :class:`~parsers.sse.SSEDecoder` and the protocol's tracker to the run's closing event (not
the body's end: what a server writes after it is not waited for), then the follow-ups a
tool call asks for; then the subscribers get ``idle_timeout`` to reach the run's end, and each
one's copy is matched to the creator's (``accounting.py``). A run's subscribers are owned by one
task group. How runs are started (closed or open loop, ``--compare``'s pairs) is ``loops.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import aiohttp
import msgspec

from gateway.errors import ConfigError
from parsers.errors import DECODE_ERRORS, RemoteProtocolError
from parsers.sse import SSEDecoder

from .accounting import RunRecord, account
from .errors import ERROR_BODY_BYTES, refusal_text
from .probes import probe_reach, probe_tokens, reach_error
from .protocols import (
    PROTOCOLS,
    BadAnswer,
    FatalLoadError,
    LoadProtocol,
    Request,
    RunStart,
    Tracker,
    checked_id,
)
from .settings import LoadSettings
from .stats import RUN_CUT, RUN_OK, LoadStats
from .subscribers import Subscriber

__all__ = ["TargetLoad"]

PLACEHOLDER_KEY = "runcast-loadtest"
_MIN_PAUSE_S = 0.05
_MAX_PAUSE_S = 1.0
_MISDIRECTED = frozenset({"http_401", "http_403", "http_404", "http_405"})
"""Answers that say the load is aimed wrong (a key, a URL), as a redirect not followed does:
every run would get the same, so they pause the users as refused connections do."""


def _misdirected(kind: str) -> bool:
    kind = kind.removeprefix("setup_")
    return kind in _MISDIRECTED or (kind.startswith("http_3") and len(kind) == 8)


UNEXPECTED = "unexpected_error"
"""The outcome of a run that raised what no other outcome names (a bug of the load test or bytes
it did not foresee): counted as failed, with the exception in the report's details."""
_TOKEN_HEADER = "runcast-subscribe-token"


class _TokenView(msgspec.Struct):
    token: str


_Subscribe = Callable[[str, str | None], None]
"""Opens the run's subscribers on a channel path (with the token the creator's response gave)."""

_token_decoder = msgspec.json.Decoder(_TokenView)
_encoder = msgspec.json.Encoder()


class _Failure(Exception):
    """A run failed; ``kind`` is what the report counts, ``detail`` what the target said."""

    def __init__(self, kind: str, detail: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


_REST_S = 0.05
_REST_BYTES = 64 * 1024


async def _rest(resp: aiohttp.ClientResponse) -> None:
    """After the run's closing event: the end of its body (usually the last chunk of a chunked
    body, already on its way) is read for a moment so that the connection goes back to the
    pool; a body going on past ``_REST_S`` or ``_REST_BYTES`` is closed instead."""
    left = _REST_BYTES
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_REST_S):
            while left > 0 and (chunk := await resp.content.readany()):
                left -= len(chunk)
    if not resp.content.at_eof():
        resp.close()


def _channel_id(value: str, what: str) -> str:
    """An id the target named a channel by, checked before it goes into a subscriber's URL."""
    try:
        return checked_id(value, what)
    except BadAnswer as exc:
        raise _Failure("protocol", str(exc)) from None


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
        self.refused_since: float | None = None
        """When (``perf_counter``) the target began refusing runs (connections, or answers that
        say the load is misdirected: a redirect, 401, 403, 404 or 405), if it still does."""
        self.refusal = "connection"
        """The error kind the current refusal is counted under."""

    def _refused(self, kind: str) -> None:
        if self.refused_since is None or self.refusal != kind:
            self.refused_since, self.refusal = time.perf_counter(), kind

    def pause(self) -> float:
        """How long a virtual user waits before its next run: nothing while the target answers,
        then the time it has been refusing runs, from 50 ms up to 1 s (so a target that went
        away, or a load aimed at the wrong URL, is not hammered)."""
        since = self.refused_since
        if since is None:
            return 0.0
        return min(_MAX_PAUSE_S, max(_MIN_PAUSE_S, time.perf_counter() - since))

    def _second(self) -> float:
        return time.time() - self._t0

    async def _post_json(self, path: str, body: Mapping[str, object], *, v1: bool = True) -> bytes:
        url = (self._v1 if v1 else self.root) + path
        async with self._session.post(
            url,
            data=_encoder.encode(body),
            headers=self._json_headers,
            timeout=self._request_timeout,
            allow_redirects=False,
        ) as resp:
            raw = await resp.content.read(1 << 20)
            if resp.status != 200:
                detail = refusal_text(resp.status, resp.headers, raw[:ERROR_BODY_BYTES])
                raise _Failure(f"http_{resp.status}", detail)
            return raw

    async def prepare(self) -> None:
        """Probe the channels, then the protocol's shared setup; ConfigError in one line."""
        if self._s.subscribers_per_run:
            self.tokens = await probe_tokens(self._session, self.root, self._request_timeout)
            # Only a protocol without a channel header mints its tokens with POST /tokens (a
            # runcast key's call): the others take theirs from the creator's response header.
            minted = self._protocol.channel_header is None
            if self.tokens and minted and self._s.api_key is None:
                raise ConfigError("the gateway requires subscribe tokens: give --api-key")
        else:
            await probe_reach(self._session, self.root, self._request_timeout)
        try:
            await self._protocol.prepare(self._post_json)
        except (_Failure, *DECODE_ERRORS) as exc:
            raise ConfigError(f"{self._v1} refused the load test's setup ({exc})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConfigError(reach_error(self.root, exc)) from None

    # -- one run -----------------------------------------------------------------------------

    async def measured_run(self) -> RunRecord | None:
        """One run, accounted in the stats; its record when it completed."""
        stats = self.stats
        stats.runs_started += 1
        stats.timeline.add(self._second(), "started")
        started = time.perf_counter()
        self.in_flight += 1
        outcome = RUN_CUT
        record: list[RunRecord] = []
        timer = asyncio.timeout(self._s.run_timeout)
        try:
            async with timer:
                outcome = await self._run(record)
        except _Failure as exc:
            outcome = exc.kind
            stats.explain(exc.kind, exc.detail)
        except TimeoutError as exc:
            outcome = "timeout"
            stats.explain(outcome, self._timed_out(exc, run_over=timer.expired()))
        except RemoteProtocolError as exc:
            outcome = "protocol"
            stats.explain(outcome, str(exc)[:200])
        except aiohttp.ClientPayloadError as exc:
            outcome = "truncated"
            stats.explain(outcome, f"the body broke off before the run's last event ({exc})"[:200])
        except aiohttp.ClientConnectorError as exc:
            outcome = "connection"
            stats.explain(outcome, reach_error(self.root, exc))
            self._refused(outcome)
        except aiohttp.ClientError:
            outcome = "connection"
        except FatalLoadError:
            raise
        except Exception as exc:
            # Last resort: bytes no branch above foresaw fail this run, never the whole load
            # (CancelledError is no Exception: a cut still propagates).
            outcome = UNEXPECTED
            stats.explain(outcome, f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.in_flight -= 1
            stats.outcomes[outcome] += 1
            column = {RUN_OK: "completed", RUN_CUT: "cut"}.get(outcome, "failed")
            stats.timeline.add(self._second(), column)
            if _misdirected(outcome):
                self._refused(outcome)
            elif outcome not in ("connection", RUN_CUT):
                self.refused_since = None  # the target answered
        if outcome != RUN_OK:
            return None
        stats.run_duration.record(time.perf_counter() - started)
        return record[0]

    def _timed_out(self, exc: TimeoutError, *, run_over: bool) -> str:
        """Which limit a run's TimeoutError is."""
        s = self._s
        if run_over:
            return f"the run was not over in {s.run_timeout:g} s (--run-timeout)"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"no connection in {s.connect_timeout:g} s (--connect-timeout)"
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return f"no data for {s.idle_timeout:g} s (--idle-timeout)"
        return f"no answer in {s.request_timeout:g} s (--request-timeout)"

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

    async def _run(self, record: list[RunRecord]) -> str:
        try:
            start = await self._protocol.begin(self._post_json)
        except _Failure as exc:
            raise _Failure(f"setup_{exc.kind}", exc.detail) from None
        except (*DECODE_ERRORS, BadAnswer) as exc:
            raise _Failure("setup_bad_answer", str(exc)[:200]) from None
        token: str | None = None
        if self.tokens and self._s.subscribers_per_run and start.token_scope is not None:
            raw = await self._post_json("/tokens", start.token_scope, v1=False)
            try:
                token = _token_decoder.decode(raw).token
            except DECODE_ERRORS as exc:
                raise _Failure("setup_bad_answer", f"POST /tokens: {exc}"[:200]) from None
        run = RunRecord(
            keep_times=self._s.compare is not None, keep_digests=self._s.subscribers_per_run > 0
        )
        record.append(run)
        tracker = self._protocol.tracker(start)
        subscribers: list[Subscriber] = []
        outcome = RUN_CUT
        failure: Exception | None = None
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
                        self.stats.explain(exc.kind, exc.detail)
                    except Exception as exc:
                        outcome, failure = "error", exc
                    if tasks and run.started:
                        # A run that failed still ends on its channel (runcast closes it).
                        await asyncio.wait(tasks, timeout=self._s.idle_timeout)
                finally:
                    for task in tasks:
                        task.cancel()
        except asyncio.CancelledError:
            # The deadline or a stop, maybe while the creator's copy had ended and subscribers
            # were still reading: the run was cut by the load test, as the runs in flight are.
            outcome = RUN_CUT
            raise
        finally:
            self._account(run, subscribers, outcome)
        if failure is not None:
            raise failure
        return outcome

    async def _creator(
        self, start: RunStart, tracker: Tracker, run: RunRecord, subscribe: _Subscribe
    ) -> str:
        request: Request | None = start.request
        segment = 0
        while request is not None:
            subscribing = start.channel is None and segment == 0
            ended = await self._stream(request, tracker, run, segment, subscribing, subscribe)
            if not ended and tracker.failure is None:
                self.stats.explain("truncated", "the stream ended before the run's last event")
                return "truncated"
            if tracker.failure is not None:
                self.stats.explain(tracker.failure, tracker.detail)
                break
            request = tracker.follow_up()
            segment += 1
        outcome = tracker.outcome()
        if outcome == "truncated":
            self.stats.explain(outcome, "the stream ended without the run's outcome")
        return outcome

    async def _stream(
        self,
        request: Request,
        tracker: Tracker,
        run: RunRecord,
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
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                body = await resp.content.read(ERROR_BODY_BYTES)
                detail = refusal_text(resp.status, resp.headers, body)
                if resp.status in (404, 405) and not self._spoken:
                    raise FatalLoadError(
                        f"POST {url} answered {resp.status}: the target does not speak "
                        f"--protocol {self._protocol.name}"
                    )
                raise _Failure(f"http_{resp.status}", detail)
            self._spoken = run.started = True
            self.refused_since = None  # the target answers: a stream began
            head = self._protocol.channel_header
            if subscribing and head is not None and head[0] in resp.headers:
                # runcast names the channel and its token up front: no need to wait for an event
                subscribing = False
                name = _channel_id(resp.headers[head[0]], f"{head[0]} header")
                subscribe(head[1] + name, resp.headers.get(_TOKEN_HEADER))
            stats = self.stats
            decoder = SSEDecoder()
            ended = over = False
            last_text: float | None = None
            before = run.events
            async for chunk in resp.content.iter_any():
                run.bytes += len(chunk)
                for event in decoder.feed(chunk):
                    now = time.perf_counter()
                    run.events += 1
                    if run.ttfe is None:
                        run.ttfe = now - run.sent
                    seen = tracker.feed(event.event, event.data_bytes)
                    if seen.upstream:
                        run.upstream(now, event.event, event.data_bytes, segment, seen)
                        stats.event_latency.record(now - sent)
                    if seen.text:
                        run.chars += seen.text
                        if run.ttft is None:
                            run.ttft = now - run.sent
                        if last_text is not None:
                            stats.inter_delta.record(now - last_text)
                        last_text = now
                    if subscribing and tracker.channel is not None:
                        subscribing = False
                        # The protocols naming their channel from the stream name it as
                        # their channel header does: its path prefix, then the id.
                        prefix = head[1] if head is not None else ""
                        name = tracker.channel.removeprefix(prefix)
                        name = _channel_id(name, "channel id from the stream")
                        subscribe(prefix + name, resp.headers.get(_TOKEN_HEADER))
                    ended = ended or seen.end
                    if seen.end and (tracker.finished or tracker.failure is not None):
                        # The run is over at its closing event, as for the OpenAI SDK: what a
                        # server writes after it is not waited for. A segment that asked for
                        # tool calls is read on: a gateway answering them goes on in it.
                        over = True
                        break
                if over:
                    break
            if over:
                await _rest(resp)
            else:
                decoder.close()
            if run.events == before and resp.content_type != "text/event-stream":
                # Not a stream cut short: no stream at all (a page, a JSON answer).
                raise _Failure(
                    "not_a_stream",
                    f"POST {request.path} answered 200 {resp.content_type}, not an event stream",
                )
        return ended

    def _account(self, run: RunRecord, subscribers: list[Subscriber], outcome: str) -> None:
        account(
            self.stats,
            self._second(),
            run,
            subscribers,
            outcome,
            channel_spans_run=self._protocol.channel_spans_run,
        )
