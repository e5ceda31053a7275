"""Hostile upstreams and misbehaving clients never crash runcast nor leak into other runs.

Every case runs beside a well-behaved run on the same gateway and the same upstream: that run is
held mid-answer (its upstream sends keep-alive comments) while the hostile case plays out, then
released, and its creator, run-channel, thread-channel and WebSocket subscribers must each get
the whole golden stream, numbered 1..n, untouched.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from hostile_upstream import (
    Cut,
    Gate,
    HostileUpstream,
    Script,
    Send,
    Stall,
    Step,
    golden_events,
    run_json,
    sse_body,
)
from http_helpers import SECRET, Gateway, Received, Subscriber, read_sse, read_ws

from gateway.http.app import create_app, statistics
from gateway.http.runner import start_runner
from gateway.hub import HubSettings
from gateway.settings import Settings
from gateway.upstream import UpstreamSettings

GOOD_THREAD, GOOD_RUN = "thread_good", "run_good"
BAD_THREAD, BAD_RUN = "thread_bad", "run_bad"
HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}
RUN_BODY = {"assistant_id": "asst_42", "stream": True}

MAX_EVENT_BYTES = 8192
"""Above every golden event (the largest is under 1 KiB), far below the 16 MiB default."""
MAX_BODY_BYTES = 64 * 1024
IDLE_TIMEOUT = 0.5
FIRST_BYTE_TIMEOUT = 1.0
CREATOR_WRITE_TIMEOUT = 0.5
WAIT = 10.0
"""Bound of every wait in this module (the whole module runs in a few seconds)."""

HELD_AT = 8
"""The well-behaved run is held after its first delta (events 1..8 delivered)."""

RUNCAST_LOGGERS = ("runcast", "gateway", "aiohttp", "asyncio")

Event = tuple[str, bytes]


# -- the gateway in front of the hostile upstream -------------------------------------------------


@dataclasses.dataclass
class Env:
    gateway: Gateway
    upstream: HostileUpstream
    session: aiohttp.ClientSession
    watches: list[Watch] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    async def health(self) -> None:
        async with self.session.get(f"{self.url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}

    async def snapshot(self, run_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/streams/runs/{run_id}/snapshot") as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
        return body

    def subscribers(self, channel: str) -> int:
        stats = self.gateway.broker.channel_statistics(channel)
        return 0 if stats is None else stats.subscribers


@pytest_asyncio.fixture
async def env(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Env]:
    async with HostileUpstream() as upstream:
        settings = Settings(
            port=0,
            subscribe_auth="open",
            token_secret=SECRET,
            recovery_timeout=2.0,
            creator_write_timeout=CREATOR_WRITE_TIMEOUT,
            shutdown_timeout=2.0,
            max_body_bytes=MAX_BODY_BYTES,
            upstream=UpstreamSettings(
                base_url=upstream.url,
                max_retries=0,
                first_byte_timeout=FIRST_BYTE_TIMEOUT,
                idle_timeout=IDLE_TIMEOUT,
                max_event_bytes=MAX_EVENT_BYTES,
            ),
            hub=HubSettings(sweep_interval=0.05),
        )
        app = create_app(settings)
        runner, url = await start_runner(app, "127.0.0.1", 0)
        gateway = Gateway(url=url, app=app, runner=runner, upstream_url=upstream.url)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
                env = Env(gateway=gateway, upstream=upstream, session=session)
                try:
                    yield env
                finally:
                    for watch in env.watches:
                        await watch.abandon()
        finally:
            await runner.cleanup()
    # Shutting down with everything quiet again logs no error either.
    errors = [r for r in caplog.get_records("teardown") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def assert_quiet(caplog: pytest.LogCaptureFixture, *, expected: tuple[str, ...] = ()) -> None:
    """No error and no traceback was logged; every warning is one of ``expected``."""
    for record in caplog.records:
        if not record.name.startswith(RUNCAST_LOGGERS):
            continue
        text = record.getMessage()
        assert record.levelno < logging.ERROR, f"{record.name}: {text}"
        assert record.exc_info is None, f"{record.name} logged a traceback: {text}"
        if record.levelno >= logging.WARNING:
            assert any(part in text for part in expected), f"unexpected warning: {text}"


async def until(predicate: Callable[[], object], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


# -- one run seen from every side -----------------------------------------------------------------


@dataclasses.dataclass
class Watch:
    """A run's creator and its subscribers, each recorded by its own task."""

    creator: Subscriber
    thread: Subscriber
    run: Subscriber
    ws: Subscriber
    run_id: str
    tasks: list[asyncio.Task[Subscriber]]
    responses: list[aiohttp.ClientResponse]
    ws_conn: aiohttp.ClientWebSocketResponse

    async def finish(self) -> None:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*self.tasks)
        await self.abandon()

    async def abandon(self) -> None:
        """Stop recording (a no-op for finished tasks) and close every connection."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for response in self.responses:
            response.close()
        await self.ws_conn.close()

    def everyone_saw(self, count: int) -> bool:
        subs = (self.creator, self.thread, self.run, self.ws)
        return all(len(sub.events) >= count for sub in subs)


def record(response: aiohttp.ClientResponse, watch: list[asyncio.Task[Subscriber]]) -> Subscriber:
    sub = Subscriber()
    watch.append(asyncio.create_task(read_sse(response, sub)))
    return sub


async def watch_run(env: Env, thread_id: str) -> Watch:
    """Subscribe to the thread, create the run, then follow its run channel (SSE and WS)."""
    tasks: list[asyncio.Task[Subscriber]] = []
    thread_response = await env.session.get(f"{env.url}/streams/threads/{thread_id}")
    assert thread_response.status == 200
    thread = record(thread_response, tasks)
    creator_response = await env.session.post(
        f"{env.url}/v1/threads/{thread_id}/runs", json=RUN_BODY, headers=HEADERS
    )
    assert creator_response.status == 200, await creator_response.text()
    run_id = creator_response.headers["runcast-run-id"]
    assert creator_response.headers["runcast-thread-id"] == thread_id
    creator = record(creator_response, tasks)
    run_response = await env.session.get(f"{env.url}/streams/runs/{run_id}?since=0")
    assert run_response.status == 200
    run = record(run_response, tasks)
    ws_conn = await env.session.ws_connect(f"{env.url}/streams/runs/{run_id}?since=0")
    ws = Subscriber()
    tasks.append(asyncio.create_task(read_ws(ws_conn, ws)))
    responses = [thread_response, creator_response, run_response]
    watch = Watch(creator, thread, run, ws, run_id, tasks, responses, ws_conn)
    env.watches.append(watch)
    return watch


def pairs(sub: Subscriber) -> list[Event]:
    return [(e.event, e.data) for e in sub.events]


def assert_whole(watch: Watch, expected: list[Event]) -> None:
    """Everyone got exactly ``expected``, numbered 1..n, and the creator's ids are run seqs."""
    numbers = list(range(1, len(expected) + 1))
    for sub in (watch.creator, watch.run, watch.thread):
        assert pairs(sub) == expected
        assert sub.seqs == numbers
    assert ws_view(pairs(watch.ws)) == ws_view(expected)
    assert watch.ws.seqs == numbers


def ws_view(events: list[Event]) -> list[tuple[str, Any]]:
    """Events as a WebSocket subscriber can compare them: JSON data parsed, other data as text
    (``frames.py`` embeds data that is not JSON as a JSON string)."""
    out: list[tuple[str, Any]] = []
    for name, data in events:
        try:
            out.append((name, orjson.loads(data)))
        except orjson.JSONDecodeError:
            out.append((name, data.decode("utf-8", "replace")))
    return out


def message_text(snapshot: dict[str, Any]) -> str:
    content = snapshot["snapshot"]["messages"][0]["content"]
    return "".join(part["text"]["value"] for part in content)


@dataclasses.dataclass
class Bystander:
    """The well-behaved run, held mid-answer until :meth:`release`."""

    env: Env
    gate: asyncio.Event
    watch: Watch
    expected: list[Event]

    @classmethod
    async def start(cls, env: Env) -> Bystander:
        expected = golden_events(GOOD_RUN, GOOD_THREAD)
        gate = asyncio.Event()
        env.upstream.script(
            GOOD_THREAD,
            Script(
                [Send(sse_body(expected[:HELD_AT])), Gate(gate), Send(sse_body(expected[HELD_AT:]))]
            ),
        )
        watch = await watch_run(env, GOOD_THREAD)
        assert watch.run_id == GOOD_RUN
        await until(lambda: watch.everyone_saw(HELD_AT), "the bystander's first events")
        return cls(env, gate, watch, expected)

    async def release(self) -> None:
        """Let the run finish and check that nobody following it noticed anything."""
        assert not any(task.done() for task in self.watch.tasks), "a bystander stream ended early"
        self.gate.set()
        await self.watch.finish()
        assert_whole(self.watch, self.expected)
        snapshot = await self.env.snapshot(GOOD_RUN)
        assert snapshot["snapshot"]["status"] == "completed"
        assert message_text(snapshot) == "Two plus two is four."


@pytest_asyncio.fixture
async def bystander(env: Env) -> Bystander:
    return await Bystander.start(env)


def errors(sub: Subscriber) -> list[Received]:
    return [e for e in sub.events if e.event == "runcast.upstream_error"]


def upstream_error(sub: Subscriber) -> dict[str, Any]:
    found = errors(sub)
    assert len(found) == 1, sub.names
    body: dict[str, Any] = found[0].json()
    return body


NO_LISTS = ("/steps answered HTTP 404", "/messages answered HTTP 404")
"""This upstream has no list endpoints: a recovery publishes the run's state without them."""


def recovered_tail(sub: Subscriber, run: bytes) -> list[Event]:
    """What a recovery publishes here: the notice, the polled Run, ``done``."""
    (notice,) = [e for e in sub.events if e.event == "runcast.recovered"]
    body = notice.json()
    assert body["status"] == "completed" and body["missed"] == {"messages": 0, "steps": 0}
    assert body["complete"] is False
    return [(notice.event, notice.data), ("thread.run.completed", run), ("done", b"[DONE]")]


# -- an event whose JSON is broken ----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("where", [8, 0], ids=["delta", "first-run-event"])
async def test_malformed_json_event_is_relayed_and_the_run_goes_on(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture, where: int
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    name = events[where][0]
    if where == 0:
        events[0] = (name, b"{not json")  # the run id must then come from the next event
    else:
        events.insert(where, (name, b"{not json"))
    env.upstream.script(BAD_THREAD, Script([Send(sse_body(events))]))

    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()

    # Passed through untouched (STYLE: a bad event is reported, never fatal), and reported.
    assert_whole(watch, events)
    assert any("relaying undecodable event" in r.getMessage() for r in caplog.records)
    # The snapshot skipped it and folded everything after it.
    snapshot = await env.snapshot(BAD_RUN)
    assert snapshot["seq"] == len(events)
    assert snapshot["snapshot"]["status"] == "completed"
    assert message_text(snapshot) == "Two plus two is four."
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog, expected=("relaying undecodable event",))


# -- a line longer than max_event_bytes -----------------------------------------------------------


LONG_LINE = b"event: thread.message.delta\ndata: " + b"x" * (2 * MAX_EVENT_BYTES) + b"\n\n"
LONG_EVENT = b"event: thread.message.delta\n" + b"data: xxxxxxxxxxxxxxxxxxxxxxxxx\n" * 1000 + b"\n"


@pytest.mark.asyncio
async def test_many_undecodable_events_log_a_few_lines(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    events[8:8] = [(events[8][0], b"{not json")] * 150
    env.upstream.script(BAD_THREAD, Script([Send(sse_body(events))]))
    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()
    assert_whole(watch, events)
    lines = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 3, lines  # the 1st, the 10th, the 100th
    assert "(100 so far)" in lines[-1]


@pytest.mark.asyncio
@pytest.mark.parametrize("huge", [LONG_LINE, LONG_EVENT], ids=["line", "event"])
async def test_oversize_line_delivers_what_came_before_then_reports(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture, huge: bytes
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    # The second write holds complete events and then the oversize line: the decoder hands
    # the complete ones over with the error, and they must still be relayed.
    env.upstream.script(
        BAD_THREAD,
        Script([Send(sse_body(events[:3])), Send(sse_body(events[3:7]) + huge), Stall()]),
    )
    env.upstream.poll(BAD_RUN, "in_progress", "completed")

    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()

    before = events[:7]
    error = upstream_error(watch.run)
    assert error["reason"] == "protocol_error"
    assert error["error"]["type"] == "upstream_error"
    assert f"{MAX_EVENT_BYTES}-byte limit" in error["error"]["message"]
    assert (error["last_status"], error["run_id"], error["thread_id"]) == (
        "in_progress",
        BAD_RUN,
        BAD_THREAD,
    )
    # Subscribers: everything before the line, the error, then the recovery: the run's final
    # state found by polling, then `done`. The creator: the same but the error (recovery.py).
    polled = env.upstream.polled[BAD_RUN]
    assert len(polled) >= 2
    tail = recovered_tail(watch.run, polled[-1])
    for sub in (watch.run, watch.thread):
        assert pairs(sub) == [*before, ("runcast.upstream_error", errors(sub)[0].data), *tail]
        assert sub.seqs == list(range(1, len(before) + 5))
    assert pairs(watch.creator) == [*before, *tail]
    assert ws_view(pairs(watch.ws)) == ws_view(pairs(watch.run))
    stats = env.gateway.broker.channel_statistics(f"run:{BAD_RUN}")
    assert stats is not None and stats.ended

    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog, expected=("upstream stream failed", "exceeds the", *NO_LISTS))


# -- invalid UTF-8, CR-only or CRLF line ends, and a BOM ------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("newline", [b"\r", b"\r\n"], ids=["cr", "crlf"])
async def test_bom_bare_cr_and_invalid_utf8_are_relayed_correctly(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture, newline: bytes
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    name, data = events[8]
    events[8] = (name, data.replace(b'"value":"', b'"value":"\xff\xfe', 1))
    body = b"\xef\xbb\xbf" + sse_body(events, newline=newline)
    # Odd-sized pieces: line breaks (and CRLF pairs) fall across network chunks.
    pieces = [Send(body[i : i + 97]) for i in range(0, len(body), 97)]
    env.upstream.script(BAD_THREAD, Script(pieces))

    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()

    # The data is relayed as UTF-8, each invalid byte replaced by U+FFFD (WHATWG decoding).
    expected = list(events)
    expected[8] = (name, data.replace(b'"value":"', b'"value":"\xef\xbf\xbd\xef\xbf\xbd', 1))
    assert_whole(watch, expected)
    assert watch.creator.names[0] == "thread.run.created"  # the BOM did not eat the name
    await bystander.release()
    assert_quiet(caplog)


# -- a 200 that is not an event stream ------------------------------------------------------------

HTML = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>\n"
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("text/html; charset=utf-8", HTML, "with text/html instead of an event stream"),
        (
            "application/json",
            run_json(BAD_RUN, BAD_THREAD, "queued"),
            "with application/json instead of an event stream",
        ),
        ("text/event-stream", b"", "before any run event"),
    ],
    ids=["html", "json", "empty"],
)
async def test_non_stream_answer_is_a_502_for_the_creator(
    env: Env,
    bystander: Bystander,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    body: bytes,
    says: str,
) -> None:
    env.upstream.script(BAD_THREAD, Script([Send(body)], content_type=content_type))
    async with env.session.post(
        f"{env.url}/v1/threads/{BAD_THREAD}/runs", json=RUN_BODY, headers=HEADERS
    ) as response:
        assert response.status == 502
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_unavailable"
    assert says in error["message"]
    # Nothing reached any channel: the run is unknown to subscribers.
    async with env.session.get(f"{env.url}/streams/runs/{BAD_RUN}") as response:
        assert response.status == 404
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog)


# -- an upstream that stalls or drops the connection ----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("poll", [None, HTML], ids=["poll-404", "poll-html"])
async def test_stall_mid_stream_is_an_idle_timeout_for_everyone(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture, poll: bytes | None
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    env.upstream.script(BAD_THREAD, Script([Send(sse_body(events[:8])), Stall()]))
    # The run cannot be retrieved (404, or an HTML page): no final state can be published,
    # and the segment still ends with `done`.
    if poll is not None:
        env.upstream.poll(BAD_RUN, poll)

    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()

    error = upstream_error(watch.creator)
    assert error["reason"] == error["error"]["code"] == "idle_timeout"
    assert error["last_status"] == "in_progress"
    assert watch.creator.ended
    assert pairs(watch.creator)[:-1] == events[:8]
    for sub in (watch.run, watch.thread):
        assert pairs(sub) == [*pairs(watch.creator), ("done", b"[DONE]")]
        assert sub.seqs == list(range(1, 11))
    assert any(r.path == f"/v1/threads/{BAD_THREAD}/runs/{BAD_RUN}" for r in env.upstream.requests)
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog, expected=("upstream stream failed", "answered HTTP 404", "is not JSON"))


@pytest.mark.asyncio
async def test_headers_then_silence_is_a_504_for_the_creator(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    env.upstream.script(BAD_THREAD, Script([Stall()]))
    async with env.session.post(
        f"{env.url}/v1/threads/{BAD_THREAD}/runs", json=RUN_BODY, headers=HEADERS
    ) as response:
        assert response.status == 504
        # The run may have started upstream: the SDK must not start another.
        assert response.headers["x-should-retry"] == "false"
        error = (await response.json())["error"]
    assert error["code"] == "upstream_timeout"
    assert "first_byte timeout" in error["message"]
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog)


@pytest.mark.asyncio
@pytest.mark.parametrize("rst", [True, False], ids=["reset", "close"])
async def test_connection_dropped_mid_event_is_reported_and_recovered(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture, rst: bool
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    cut_here = asyncio.Event()
    partial = b'event: thread.message.delta\ndata: {"id":"msg_B2","object":"thread.me'
    env.upstream.script(
        BAD_THREAD,
        # The cut waits until the first events were relayed: a reset may discard unread bytes.
        Script([Send(sse_body(events[:8])), Gate(cut_here), Send(partial), Cut(rst=rst)]),
    )
    env.upstream.poll(BAD_RUN, "in_progress", "in_progress", "completed")

    watch = await watch_run(env, BAD_THREAD)
    await until(lambda: watch.everyone_saw(8), "the events before the cut")
    cut_here.set()
    await watch.finish()

    error = upstream_error(watch.run)
    # A cut mid-body counts as an end of stream without `done` (upstream/assistants/stream.py).
    assert error["reason"] == "stream_truncated"
    assert error["last_status"] == "in_progress"
    assert error["run_id"] == BAD_RUN
    # Recovery (relay.py): the run is polled until it settles and its state is published; the
    # creator, whose response stayed open meanwhile, gets all of it but the failure notice.
    polled = env.upstream.polled[BAD_RUN]
    assert len(polled) == 3
    tail = recovered_tail(watch.run, polled[-1])
    for sub in (watch.run, watch.thread):
        assert pairs(sub) == [*events[:8], ("runcast.upstream_error", errors(sub)[0].data), *tail]
        assert sub.seqs == list(range(1, 13))
    assert pairs(watch.creator) == [*events[:8], *tail]
    snapshot = await env.snapshot(BAD_RUN)
    assert snapshot["snapshot"]["status"] == "completed"
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog, expected=("upstream stream failed", *NO_LISTS))


@pytest.mark.asyncio
async def test_done_before_the_runs_end_is_a_cut_and_recovered(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    # The body ends cleanly with `done`, but the run is still in progress: no terminal status,
    # no `requires_action`. It used to count as the run's end: `done` relayed, nothing polled,
    # subscribers left waiting on a channel that never ended.
    env.upstream.script(
        BAD_THREAD, Script([Send(sse_body(events[:8]) + b"event: done\ndata: [DONE]\n\n")])
    )
    env.upstream.poll(BAD_RUN, "in_progress", "completed")

    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()

    error = upstream_error(watch.run)
    assert error["reason"] == "stream_truncated"
    assert error["last_status"] == "in_progress"
    assert "sent 'done' before the run ended" in error["error"]["message"]
    # The early `done` is not relayed: the one `done` comes after the recovered run.
    tail = recovered_tail(watch.run, env.upstream.polled[BAD_RUN][-1])
    for sub in (watch.run, watch.thread):
        assert pairs(sub) == [*events[:8], ("runcast.upstream_error", errors(sub)[0].data), *tail]
        assert sub.seqs == list(range(1, 13))
    assert pairs(watch.creator) == [*events[:8], *tail]
    assert ws_view(pairs(watch.ws)) == ws_view(pairs(watch.run))
    snapshot = await env.snapshot(BAD_RUN)
    assert snapshot["snapshot"]["status"] == "completed"
    info = await env.gateway.broker.channel_info(f"run:{BAD_RUN}")
    assert info is not None and info.ended
    # The channel ended: a subscriber reading past `done` gets the end of the body, and a
    # WebSocket close 1000, after the same events.
    url = f"{env.url}/streams/runs/{BAD_RUN}?since=0"
    async with asyncio.timeout(WAIT):
        async with env.session.get(url) as late:
            replay = await read_sse(late, Subscriber(), stop_at_done=2)
        async with env.session.ws_connect(url) as ws:
            frames = [orjson.loads(msg.data) async for msg in ws]
    assert replay.ended and pairs(replay) == pairs(watch.run)
    assert [frame["event"] for frame in frames] == [name for name, _ in pairs(watch.run)]
    assert ws.close_code == 1000
    await bystander.release()
    await env.health()
    assert env.gateway.relays.statistics().failed == 0
    assert_quiet(caplog, expected=("upstream stream failed", *NO_LISTS))


# -- bad requests ---------------------------------------------------------------------------------


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/json"
    body: dict[str, Any] = (await response.json())["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


@pytest.mark.asyncio
async def test_bad_requests_get_json_errors(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    session, url = env.session, env.url
    big = (
        b'{"assistant_id":"asst_42","stream":true,"instructions":"' + b"x" * MAX_BODY_BYTES + b'"}'
    )

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    # Oversized bodies, with and without Content-Length, streamed call or passthrough: 413.
    for path, data in (
        (f"/v1/threads/{BAD_THREAD}/runs", big),
        (f"/v1/threads/{BAD_THREAD}/runs", chunks()),
        ("/v1/assistants", big),
    ):
        async with session.post(f"{url}{path}", data=data, headers=HEADERS) as response:
            assert response.status == 413
            error = await error_of(response)
            assert error["code"] == "body_too_large"
            assert error["type"] == "invalid_request_error"
    assert env.upstream.posted(BAD_THREAD) == [], "an oversized body reached the upstream"
    assert not any(r.path == "/v1/assistants" for r in env.upstream.requests)

    # A streamed-looking create whose JSON is broken is passed through; the upstream's 400 and
    # its body come back unchanged (routes.py).
    broken = b'{"assistant_id": "asst_42", "stream": true'
    async with session.post(
        f"{url}/v1/threads/{BAD_THREAD}/runs",
        data=broken,
        headers={**HEADERS, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        error = await error_of(response)
        assert error["message"] == "We could not parse the JSON body of your request."
    assert env.upstream.posted(BAD_THREAD) == [broken]

    # A streamed submission whose outputs are not a list is refused by runcast itself.
    async with session.post(
        f"{url}/v1/threads/{BAD_THREAD}/runs/{BAD_RUN}/submit_tool_outputs",
        json={"tool_outputs": "nope", "stream": True},
        headers=HEADERS,
    ) as response:
        assert response.status == 400
        error = await error_of(response)
        assert error["param"] == "tool_outputs"

    # Unknown runs: 404 unknown_run for SSE, snapshot and WebSocket alike.
    for path in ("/streams/runs/run_nope", "/streams/runs/run_nope/snapshot"):
        async with session.get(f"{url}{path}") as response:
            assert response.status == 404
            assert (await error_of(response))["code"] == "unknown_run"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await session.ws_connect(f"{url}/streams/runs/run_nope")
    assert caught.value.status == 404

    # Unknown routes and ids that are no ids: 404 not_found; a wrong method: 405.
    for path in ("/nope", "/streams/runs/run%20x", "/streams/things/x"):
        async with session.get(f"{url}{path}") as response:
            assert response.status == 404
            assert (await error_of(response))["code"] == "not_found"
    async with session.delete(f"{url}/streams/runs/{GOOD_RUN}") as response:
        assert response.status == 405
        assert (await error_of(response))["code"] == "method_not_allowed"
    async with session.get(
        f"{url}/streams/runs/{GOOD_RUN}", headers={"Last-Event-ID": "x"}
    ) as response:
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid_since"

    await bystander.release()
    await env.health()
    assert_quiet(caplog)


# -- clients that vanish mid-run ------------------------------------------------------------------


class RawClient:
    """An HTTP/1.1 client on a bare socket, so it can leave the way a crashed browser does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""

    @classmethod
    async def send(cls, url: str, request: bytes) -> RawClient:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        return cls(reader, writer)

    async def read_until(self, marker: bytes) -> None:
        async with asyncio.timeout(WAIT):
            while marker not in self.received:
                chunk = await self.reader.read(65536)
                assert chunk, f"connection closed before {marker!r}: {self.received!r}"
                self.received += chunk

    async def read_until_closed(self) -> None:
        """Read until the gateway closes the connection (bounded)."""
        async with asyncio.timeout(WAIT):
            try:
                while chunk := await self.reader.read(65536):
                    self.received += chunk
            except ConnectionResetError:
                pass
        self.writer.close()

    def reset(self) -> None:
        """Leave without a goodbye: RST, unread bytes and all."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def get_request(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def ws_request(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    return get_request(path, upgrade)


def post_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sk-caller\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def all_gone(env: Env) -> None:
    """Every subscriber and relay is gone and nothing failed."""
    await until(lambda: env.gateway.broker.statistics().subscribers == 0, "no subscribers left")
    await until(lambda: env.gateway.relays.statistics().active == 0, "no relay left")
    assert env.gateway.connections.count() == 0
    await env.health()
    counters = statistics(env.gateway.app)
    assert counters.hub.subscribers == 0
    assert counters.relays.failed == 0


@pytest.mark.asyncio
async def test_vanished_subscribers_leave_no_trace(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    run_channel = f"run:{GOOD_RUN}"
    followers = env.subscribers(run_channel)
    assert followers == 2  # the bystander's SSE and WebSocket subscribers

    # Subscribers (SSE and WebSocket) that read some events, then vanish while the run waits.
    sse = await RawClient.send(env.url, get_request(f"/streams/runs/{GOOD_RUN}?since=0"))
    await sse.read_until(b"event: thread.message.delta")
    ws = await RawClient.send(env.url, ws_request(f"/streams/runs/{GOOD_RUN}?since=0"))
    await ws.read_until(b"thread.message.delta")
    assert b" 101 " in ws.received.split(b"\r\n", 1)[0]
    assert env.subscribers(run_channel) == followers + 2
    sse.reset()
    ws.reset()
    await until(lambda: env.subscribers(run_channel) == followers, "the vanished subscribers")
    assert env.gateway.connections.count(run_channel) == followers

    # One that vanishes just as the run resumes: the hub writes into a reset socket.
    late = await RawClient.send(env.url, get_request(f"/streams/threads/{GOOD_THREAD}?since=0"))
    await late.read_until(b"event: thread.message.delta")
    late.reset()
    await bystander.release()
    await all_gone(env)
    assert_quiet(caplog)


@pytest.mark.asyncio
async def test_vanished_creators_leave_the_run_to_its_subscribers(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    # One creator leaves mid-answer, one before the response head (the upstream has not
    # answered yet); both runs go on for their subscribers.
    resumes: list[asyncio.Event] = []
    followers: list[tuple[aiohttp.ClientResponse, asyncio.Task[Subscriber], list[Event]]] = []
    for thread_id, run_id, held_at in ((BAD_THREAD, BAD_RUN, 8), ("thread_gone", "run_gone", 0)):
        events = golden_events(run_id, thread_id)
        resume = asyncio.Event()
        steps: list[Step] = [Send(sse_body(events[:held_at]))] if held_at else []
        steps += [Gate(resume), Send(sse_body(events[held_at:]))]
        env.upstream.script(thread_id, Script(steps))
        response = await env.session.get(f"{env.url}/streams/threads/{thread_id}")
        assert response.status == 200
        follower = asyncio.create_task(read_sse(response, Subscriber()))
        creator = await RawClient.send(
            env.url, post_request(f"/v1/threads/{thread_id}/runs", orjson.dumps(RUN_BODY))
        )
        if held_at:
            await creator.read_until(b"event: thread.message.delta")
            assert f"runcast-run-id: {run_id}".encode() in creator.received.lower()
        else:
            await until(functools.partial(env.upstream.posted, thread_id), "the upstream call")
        creator.reset()
        resumes.append(resume)
        followers.append((response, follower, events))

    for resume in resumes:
        resume.set()
    for response, follower, events in followers:
        async with asyncio.timeout(WAIT):
            sub = await follower
        response.close()
        assert pairs(sub) == events
        assert sub.seqs == list(range(1, len(events) + 1))
    for run_id in (BAD_RUN, "run_gone"):
        snapshot = await env.snapshot(run_id)
        assert snapshot["snapshot"]["status"] == "completed"
    await bystander.release()
    await all_gone(env)
    assert_quiet(caplog)


@pytest.mark.asyncio
async def test_creator_whose_socket_stops_accepting_is_cut_off_at_the_end(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    events = golden_events(BAD_RUN, BAD_THREAD)
    resume = asyncio.Event()
    env.upstream.script(
        BAD_THREAD,
        Script([Send(sse_body(events[:8])), Gate(resume), Send(sse_body(events[8:]))]),
    )
    response = await env.session.get(f"{env.url}/streams/threads/{BAD_THREAD}")
    follower = asyncio.create_task(read_sse(response, Subscriber()))
    creator = await RawClient.send(
        env.url, post_request(f"/v1/threads/{BAD_THREAD}/runs", orjson.dumps(RUN_BODY))
    )
    await creator.read_until(b"event: thread.message.delta")
    # From now on the gateway's side of the connection is told what its transport says when
    # the peer's socket accepts nothing more: stop writing.
    local = creator.writer.get_extra_info("sockname")
    server = env.gateway.runner.server
    assert server is not None
    (stalled,) = [
        handler
        for handler in server.connections
        if handler.transport is not None and handler.transport.get_extra_info("peername") == local
    ]
    stalled.pause_writing()
    resume.set()
    async with asyncio.timeout(WAIT):
        sub = await follower
    response.close()
    assert pairs(sub) == events
    # The end of the response cannot be written either: within creator_write_timeout the
    # creator is disconnected (creator.py), not held open forever.
    await creator.read_until_closed()
    await bystander.release()
    await all_gone(env)
    assert_quiet(caplog)


# -- a flood of events before the run is known ----------------------------------------------------


@pytest.mark.asyncio
async def test_events_before_the_first_run_event_keep_their_order(
    env: Env, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    flood: list[Event] = [("message", b'{"n":%d}' % i) for i in range(100)]
    events = flood + golden_events(BAD_RUN, BAD_THREAD)
    env.upstream.script(BAD_THREAD, Script([Send(sse_body(events))]))
    watch = await watch_run(env, BAD_THREAD)
    await watch.finish()
    await bystander.release()
    assert env.gateway.relays.statistics().failed == 0
    # Whatever the run channel keeps of them, the creator and the thread get them in order.
    assert pairs(watch.thread) == events
    assert pairs(watch.creator) == events
