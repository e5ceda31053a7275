"""The run loop: virtual users that each start runs one after another, measured into LoadStats.

One run, in order: create a thread; open ``subscribers_per_run`` subscribers on its thread
channel (``?since=0``, so nothing published before a subscription is missed) and wait until each
is connected or has failed; ``POST /v1/threads/{id}/runs`` with ``"stream": true`` and read the
creator's stream with :class:`~parsers.sse.SSEDecoder` to its end, answering a
``requires_action`` with placeholder tool outputs (``stream: true`` again) as a client would;
then give the subscribers ``idle_timeout`` to reach the run's end. Delivery lag is the time from
the creator receiving the n-th upstream event to a subscriber receiving it (both sides see the
same upstream events in the same order; runcast's own ``runcast.*`` events are not counted).

Everything is owned: the users run in one task group, each run's subscribers in another, and the
whole load in a task that ``execute`` cancels on ``stop`` or when ``duration`` is over; runs cut
off that way count as interrupted, not failed.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Mapping

import aiohttp
import msgspec

from gateway.errors import ConfigError
from parsers.errors import RemoteProtocolError
from parsers.sse import SSEDecoder

from .settings import LoadSettings
from .stats import LoadStats
from .subscribers import RUNCAST_PREFIX, Subscriber, run_status

__all__ = ["LoadTarget", "execute"]

_TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})
PLACEHOLDER_KEY = "runcast-loadtest"
_MAX_TOOL_ROUNDS = 10
_CREATOR_FAILURES = frozenset({"runcast.lagged", "runcast.upstream_error"})
"""runcast events that end a creator's response early (see ``gateway/http/creator.py``)."""
_ERROR_BODY_BYTES = 4096

_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    },
}


class _ToolCall(msgspec.Struct):
    id: str


class _Outputs(msgspec.Struct):
    tool_calls: list[_ToolCall] = []


class _RequiredAction(msgspec.Struct):
    submit_tool_outputs: _Outputs = msgspec.field(default_factory=_Outputs)


class _RequiresActionRun(msgspec.Struct):
    required_action: _RequiredAction | None = None


class _IdView(msgspec.Struct):
    id: str


class _TokenView(msgspec.Struct):
    token: str


_action_decoder = msgspec.json.Decoder(_RequiresActionRun)
_id_decoder = msgspec.json.Decoder(_IdView)
_token_decoder = msgspec.json.Decoder(_TokenView)
_encoder = msgspec.json.Encoder()


class _Failure(Exception):
    """A run failed; ``kind`` is what the report counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class LoadTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where the load goes: ``url`` is the server root; ``tokens`` when subscribers need one."""

    url: str
    tokens: bool = False


class _Creator:
    """The creator's side of one run: its stream(s), timings and outcome."""

    def __init__(self) -> None:
        self.times = array("d")
        self.events = 0
        self.bytes = 0
        self.ttfe: float | None = None
        self.last_status: str | None = None
        self.run_id = ""
        self.started = False
        """True once the server answered 200, i.e. the run exists and subscribers will see it."""


class _Driver:
    def __init__(
        self,
        settings: LoadSettings,
        session: aiohttp.ClientSession,
        target: LoadTarget,
        stats: LoadStats,
    ) -> None:
        self._s = settings
        self._session = session
        self._target = target
        self._v1 = target.url.rstrip("/") + "/v1"
        self._stats = stats
        # Like the openai SDK, always send a key: the simulator wants one and takes any.
        self._auth = {"Authorization": f"Bearer {settings.api_key or PLACEHOLDER_KEY}"}
        self._json_headers = {**self._auth, "Content-Type": "application/json"}
        self._request_timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout, connect=settings.connect_timeout
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=settings.idle_timeout
        )
        self._assistant_id = ""
        self._next_start = 0.0
        self._subscriber_seq = 0

    async def _post_json(self, url: str, body: Mapping[str, object]) -> bytes:
        async with self._session.post(
            url,
            data=_encoder.encode(body),
            headers=self._json_headers,
            timeout=self._request_timeout,
        ) as resp:
            raw = await resp.content.read(1 << 20)
            if resp.status != 200:
                raise _Failure(f"setup_http_{resp.status}")
            return raw

    async def setup(self) -> None:
        """Create the assistant every run uses (with one function tool for the tool scenarios)."""
        try:
            raw = await self._post_json(
                f"{self._v1}/assistants",
                {"model": self._s.model, "name": "runcast-loadtest", "tools": [_TOOL]},
            )
            self._assistant_id = _id_decoder.decode(raw).id
        except (_Failure, aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            raise ConfigError(f"cannot create an assistant on {self._v1}: {exc!r}") from None

    def _claim_run(self, deadline: float | None) -> bool:
        limit = self._s.run_limit
        if limit is not None and self._stats.runs_started >= limit:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        self._stats.runs_started += 1
        return True

    async def _pace(self) -> None:
        if self._s.rate is None:
            return
        now = time.perf_counter()
        slot = max(now, self._next_start)
        self._next_start = slot + 1 / self._s.rate
        await asyncio.sleep(slot - now)

    async def users(self, deadline: float | None) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self._s.concurrency):
                tg.create_task(self._user(deadline))

    async def _user(self, deadline: float | None) -> None:
        while True:
            await self._pace()
            if not self._claim_run(deadline):
                return
            await self._measured_run()

    async def _measured_run(self) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._s.run_timeout):
                await self._run()
        except _Failure as exc:
            self._stats.failed[exc.kind] += 1
        except TimeoutError:
            self._stats.failed["timeout"] += 1
        except RemoteProtocolError:
            self._stats.failed["protocol"] += 1
        except aiohttp.ClientPayloadError:
            self._stats.failed["truncated"] += 1
        except aiohttp.ClientError:
            self._stats.failed["connection"] += 1
        except asyncio.CancelledError:
            self._stats.runs_interrupted += 1
            raise
        else:
            self._stats.runs_ok += 1
            self._stats.run_duration.record(time.perf_counter() - started)

    def _subscriber(self, thread_id: str, token: str | None) -> Subscriber:
        transport = self._s.subscriber_transport
        self._subscriber_seq += 1
        websocket = transport == "ws" or (transport == "mixed" and self._subscriber_seq % 2 == 0)
        url = f"{self._target.url.rstrip('/')}/streams/threads/{thread_id}?since=0"
        if token is not None:
            url += f"&token={token}"
        if websocket:
            url = "ws" + url.removeprefix("http")
        return Subscriber(
            self._session,
            url,
            websocket=websocket,
            connect_timeout=self._s.connect_timeout,
            idle_timeout=self._s.idle_timeout,
        )

    async def _run(self) -> None:
        thread_id = _id_decoder.decode(await self._post_json(f"{self._v1}/threads", {})).id
        token: str | None = None
        if self._target.tokens and self._s.subscribers_per_run:
            raw = await self._post_json(
                f"{self._target.url.rstrip('/')}/tokens", {"thread_id": thread_id}
            )
            token = _token_decoder.decode(raw).token
        subscribers = [
            self._subscriber(thread_id, token) for _ in range(self._s.subscribers_per_run)
        ]
        creator = _Creator()
        failure: _Failure | RemoteProtocolError | aiohttp.ClientError | None = None
        # A task group wraps what its body raises in an ExceptionGroup: keep the run's own
        # failure out of it and raise it afterwards, once the subscribers are accounted for.
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(sub.run()) for sub in subscribers]
            try:
                for sub in subscribers:
                    await sub.ready.wait()
                try:
                    await self._creator(thread_id, creator)
                except (_Failure, RemoteProtocolError, aiohttp.ClientError) as exc:
                    failure = exc
                if tasks and creator.started:
                    # A run that failed still ends on its channel (runcast closes it with done).
                    await asyncio.wait(tasks, timeout=self._s.idle_timeout)
            finally:
                for task in tasks:
                    task.cancel()
        self._account(creator, subscribers, ok=failure is None)
        if failure is not None:
            raise failure

    def _account(self, creator: _Creator, subscribers: list[Subscriber], *, ok: bool) -> None:
        stats = self._stats
        stats.creator_events += creator.events
        stats.creator_bytes += creator.bytes
        if creator.ttfe is not None:
            stats.ttfe.record(creator.ttfe)
        for sub in subscribers:
            stats.subscriber_events += sub.events
            stats.subscriber_bytes += sub.bytes
            if sub.error is None and not sub.finished and creator.started:
                sub.error = "subscriber_incomplete"
            if sub.error is not None:
                if creator.started:
                    stats.errors[sub.error] += 1
                continue
            stats.subscribers_complete += 1
            # A creator's response ends at its run's failure; the channel goes on to recovery.
            if ok and len(sub.times) != len(creator.times):
                stats.delivery_mismatches += 1
        # runcast publishes to the channels before it queues the creator's copy, so subscribers
        # usually read an event first. Lag is therefore measured from the earliest receipt of
        # the same event by any reader of the run (creator or subscriber).
        complete = [sub.times for sub in subscribers if sub.error is None]
        for index, at_creator in enumerate(creator.times):
            first = min([at_creator, *(t[index] for t in complete if index < len(t))])
            for times in complete:
                if index < len(times):
                    if times[index] < at_creator:
                        stats.subscriber_ahead += 1
                    stats.delivery_lag.record(times[index] - first)

    async def _creator(self, thread_id: str, creator: _Creator) -> None:
        url = f"{self._v1}/threads/{thread_id}/runs"
        body: dict[str, object] = {
            "assistant_id": self._assistant_id,
            "stream": True,
            "metadata": {"mock_scenario": self._s.scenario},
        }
        sent = time.perf_counter()
        for _ in range(_MAX_TOOL_ROUNDS):
            tool_call_ids = await self._stream(url, body, creator, sent)
            if not tool_call_ids:
                break
            url = f"{self._v1}/threads/{thread_id}/runs/{creator.run_id}/submit_tool_outputs"
            body = {
                "stream": True,
                "tool_outputs": [{"tool_call_id": i, "output": "ok"} for i in tool_call_ids],
            }
        status = creator.last_status
        if status == "completed":
            return
        if status in _TERMINAL:
            raise _Failure(f"run_{status}")
        raise _Failure("no_final_status")

    async def _stream(
        self, url: str, body: Mapping[str, object], creator: _Creator, sent: float
    ) -> list[str]:
        """Read one streamed response; the tool call ids when it ended in requires_action."""
        async with self._session.post(
            url,
            data=_encoder.encode(body),
            headers=self._json_headers,
            timeout=self._stream_timeout,
        ) as resp:
            if resp.status != 200:
                await resp.content.read(_ERROR_BODY_BYTES)
                raise _Failure(f"http_{resp.status}")
            creator.started = True
            creator.run_id = resp.headers.get("runcast-run-id", creator.run_id)
            decoder = SSEDecoder()
            saw_done = False
            action: list[str] = []
            async for chunk in resp.content.iter_any():
                creator.bytes += len(chunk)
                for event in decoder.feed(chunk):
                    now = time.perf_counter()
                    if creator.ttfe is None:
                        creator.ttfe = now - sent
                    creator.events += 1
                    name = event.event
                    if name in _CREATOR_FAILURES:
                        raise _Failure(name.removeprefix(RUNCAST_PREFIX))
                    if name.startswith(RUNCAST_PREFIX):
                        continue
                    creator.times.append(now)
                    if name == "error":
                        raise _Failure("error_event")
                    if name == "done":
                        saw_done = True
                        continue
                    status = run_status(name, event.data_bytes)
                    if status is None:
                        continue
                    creator.last_status = status
                    if name == "thread.run.created":
                        creator.run_id = _id_decoder.decode(event.data_bytes).id
                    if status == "requires_action":
                        required = _action_decoder.decode(event.data_bytes).required_action
                        if required is not None:
                            action = [c.id for c in required.submit_tool_outputs.tool_calls]
            decoder.close()
        if not saw_done:
            raise _Failure("truncated")
        return action if creator.last_status == "requires_action" else []


async def probe_tokens(session: aiohttp.ClientSession, url: str, limit_s: float) -> bool:
    """Whether the thread channels of the gateway at ``url`` need a subscribe token.

    A 401 on a channel means tokens (authorisation comes before anything else, so the probe
    creates nothing); a 200 means open mode, and the probe disconnects at once.
    """
    probe = f"{url.rstrip('/')}/streams/threads/thread_loadtest_probe"
    limit = aiohttp.ClientTimeout(total=limit_s)
    try:
        async with session.get(probe, headers={"Accept": "text/event-stream"}, timeout=limit) as r:
            if r.status == 401:
                return True
            if r.status == 200:
                return False
            raise ConfigError(
                f"{probe} answered {r.status}: is the target a runcast gateway? "
                "(use --subscribers-per-run 0 for a bare Assistants API)"
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach {url}: {exc!r}") from None


async def execute(
    settings: LoadSettings, url: str, *, stop: asyncio.Event | None = None
) -> LoadStats:
    """Run the load against the server root ``url`` until done, ``duration`` or ``stop``."""
    stats = LoadStats()
    connector = aiohttp.TCPConnector(limit=settings.connections + 4, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.connect_timeout, sock_read=settings.idle_timeout
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tokens = False
        if settings.subscribers_per_run:
            tokens = await probe_tokens(session, url, settings.request_timeout)
            if tokens and settings.api_key is None:
                raise ConfigError("the gateway requires subscribe tokens: give --api-key")
        driver = _Driver(settings, session, LoadTarget(url=url, tokens=tokens), stats)
        await driver.setup()
        started = time.perf_counter()
        deadline = None if settings.duration is None else started + settings.duration
        load = asyncio.create_task(driver.users(deadline))
        stopped = asyncio.create_task((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait(
                {load, stopped}, timeout=settings.duration, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            load.cancel()
            stopped.cancel()
            await asyncio.wait({load, stopped})
            stats.elapsed = time.perf_counter() - started
        if not load.cancelled():
            load.result()
    return stats
