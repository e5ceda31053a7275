"""An upstream naming another run or thread inside a run's stream never moves the run there.

A run's thread is the one its URL names (``POST /threads/{thread_id}/runs``) or, for create
thread and run, the one its stream created; its run id is the first run event's (or, for a
submission, the URL's). A run event naming another thread or run is refused as a protocol error:
before anything was published the creator gets a 502 and no id or token; later the channels get
``runcast.upstream_error`` (``protocol_error``). Either way nothing of the other run is
published, held as this run's action, or answered by tool automation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import SECRET, Gateway, served_upstream

from gateway.http.app import create_app
from gateway.http.runner import start_runner
from gateway.runs.assistants.protocol import ASSISTANTS
from gateway.settings import Settings
from gateway.tools import ToolRegistry, ToolSettings
from gateway.upstream import UpstreamClient, UpstreamSettings
from parsers.sse import SSEDecoder

KEY = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}
Event = tuple[str, dict[str, Any]]


def run(run_id: str, thread_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "object": "thread.run",
        "thread_id": thread_id,
        "assistant_id": "asst_1",
        "status": status,
        "created_at": 1,
        "expires_at": 4_000_000_000,
        **extra,
    }


def action(run_id: str, thread_id: str, *call_ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        for i in call_ids
    ]
    required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
    return run(run_id, thread_id, "requires_action", required_action=required)


def text(thread_id: str, run_id: str, value: str) -> Event:
    delta = {"content": [{"index": 0, "type": "text", "text": {"value": value}}]}
    return "thread.message.delta", {
        "id": f"msg_{run_id}",
        "object": "thread.message.delta",
        "delta": delta,
    }


def answer(run_id: str, thread_id: str, value: str) -> list[Event]:
    return [
        ("thread.run.in_progress", run(run_id, thread_id, "in_progress")),
        text(thread_id, run_id, value),
        ("thread.run.completed", run(run_id, thread_id, "completed")),
    ]


def sse(events: list[Event], *, done: bool = True) -> bytes:
    body = b"".join(
        b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)) for name, data in events
    )
    return body + (b"event: done\ndata: [DONE]\n\n" if done else b"")


@dataclass
class Upstream:
    """Streams scripted per assistant id (``runs``) and per submitted run (``continuations``);
    records every submission; ``GET`` of a run answers ``polled`` (404 when absent)."""

    runs: dict[str, list[Event]] = field(default_factory=dict)
    continuations: dict[str, list[Event]] = field(default_factory=dict)
    polled: dict[str, dict[str, Any]] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)
    """Assistant ids whose streams end without ``done``, mid-run (a recovery follows)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """What ``GET .../messages`` lists, whatever its ``run_id`` filter."""
    steps: list[dict[str, Any]] = field(default_factory=list)
    steps_never_end: bool = False
    """Every page of steps says ``has_more`` with the same ``last_id``."""
    step_pages: int = 0
    submissions: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/threads/{thread_id}/runs", self._create)
        app.router.add_post("/v1/threads/runs", self._create)
        app.router.add_post(
            "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", self._submit
        )
        app.router.add_get("/v1/threads/{thread_id}/runs/{run_id}", self._get)
        app.router.add_get("/v1/threads/{thread_id}/runs/{run_id}/steps", self._steps)
        app.router.add_get("/v1/threads/{thread_id}/messages", self._messages)
        return app

    async def _stream(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    async def _create(self, request: web.Request) -> web.StreamResponse:
        assistant_id = (await request.json())["assistant_id"]
        script = self.runs[assistant_id]
        return await self._stream(request, sse(script, done=assistant_id not in self.cut))

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
        outputs = (await request.json())["tool_outputs"]
        self.submissions.append((thread_id, run_id, [o["tool_call_id"] for o in outputs]))
        return await self._stream(request, sse(self.continuations[run_id]))

    async def _messages(self, request: web.Request) -> web.Response:
        last = self.messages[-1]["id"] if self.messages else None
        return web.json_response({"data": self.messages, "last_id": last, "has_more": False})

    async def _steps(self, request: web.Request) -> web.Response:
        self.step_pages += 1
        last = self.steps[-1]["id"] if self.steps else None
        page = {"data": self.steps, "last_id": last, "has_more": self.steps_never_end}
        return web.json_response(page)

    async def _get(self, request: web.Request) -> web.Response:
        found = self.polled.get(request.match_info["run_id"])
        if found is None:
            return web.json_response({"error": {"message": "no such run"}}, status=404)
        return web.json_response(found)


StartGateway = Callable[..., Any]


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    scripted = Upstream()
    async with served_upstream(scripted.app()) as url:
        yield scripted, url


@pytest_asyncio.fixture
async def gateway(upstream: tuple[Upstream, str]) -> AsyncIterator[Gateway]:
    """runcast in token mode in front of the scripted upstream, answering ``get_weather``."""
    calls: list[str] = []

    def get_weather() -> str:
        calls.append("get_weather")
        return "sunny"

    tools = ToolRegistry()
    tools.register(get_weather)
    settings = Settings(
        port=0,
        subscribe_auth="token",
        token_secret=SECRET,
        recovery_timeout=1.0,
        shutdown_timeout=2.0,
        upstream=UpstreamSettings(base_url=upstream[1], max_retries=0, idle_timeout=10.0),
        tools=ToolSettings(timeout=5.0),
    )
    app = create_app(settings, tools=tools)
    runner, url = await start_runner(app, "127.0.0.1", 0)
    try:
        yield Gateway(url=url, app=app, runner=runner, upstream_url=upstream[1])
    finally:
        await runner.cleanup()


async def create(
    session: aiohttp.ClientSession, gateway: Gateway, path: str, assistant_id: str
) -> tuple[int, dict[str, str], list[tuple[str, bytes]]]:
    """A streamed run-starting call: its status, head and events (an error's body as one)."""
    body = {"assistant_id": assistant_id, "stream": True}
    async with session.post(f"{gateway.v1}{path}", json=body, headers=KEY) as response:
        data = await response.read()
        head = dict(response.headers)
        if response.status != 200:
            return response.status, head, [("", data)]
    return 200, head, [(e.event, e.data_bytes) for e in SSEDecoder().feed(data)]


def upstream_bytes(events: list[tuple[str, bytes]]) -> bytes:
    """The data of the upstream's events (not runcast's, whose error texts name the refused)."""
    return b"".join(data for name, data in events if not name.startswith("runcast."))


async def refused(
    session: aiohttp.ClientSession, gateway: Gateway, path: str, *before: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """A run-starting call runcast refuses mid-stream: a 200 whose events are ``before`` then
    ``runcast.upstream_error`` (a ``protocol_error``); its head and that error's data."""
    status, head, events = await create(session, gateway, path, "asst_1")
    assert status == 200 and names(events) == [*before, "runcast.upstream_error"], events
    error: dict[str, Any] = orjson.loads(events[-1][1])
    assert error["reason"] == "protocol_error", error
    return head, error


def names(events: list[tuple[str, bytes]]) -> list[str]:
    return [name for name, _ in events]


async def channel_exists(gateway: Gateway, channel: str) -> bool:
    return await gateway.broker.channel_info(channel) is not None


async def replay(
    session: aiohttp.ClientSession, gateway: Gateway, run_id: str, token: str
) -> list[tuple[str, bytes]]:
    url = f"{gateway.url}/streams/runs/{run_id}"
    async with asyncio.timeout(10):
        async with session.get(url, params={"since": "0", "token": token}) as response:
            assert response.status == 200
            return [(e.event, e.data_bytes) for e in SSEDecoder().feed(await response.read())]


# -- the thread ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_run_said_to_be_another_threads_is_refused_with_no_token_for_that_thread(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_victim", "queued")),
        *answer("run_1", "thread_victim", "secret"),
    ]
    # As for a new run given the id of a run runcast holds (test_http_reused_ids.py).
    head, error = await refused(session, gateway, "/threads/thread_attacker/runs")
    assert error["thread_id"] == "thread_attacker"
    assert (
        "the upstream named thread thread_victim for a run of thread thread_attacker"
        in (error["error"]["message"])
    )
    assert head.get("runcast-thread-id") == "thread_attacker"
    assert "runcast-run-id" not in head
    assert not await channel_exists(gateway, "thread:thread_victim")
    assert not await channel_exists(gateway, "run:run_1")


@pytest.mark.asyncio
async def test_create_thread_and_run_learns_its_thread_from_the_upstream(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    thread = {"id": "thread_new", "object": "thread", "created_at": 1, "metadata": {}}
    scripted.runs["asst_1"] = [
        ("thread.created", thread),
        ("thread.run.created", run("run_1", "thread_new", "queued")),
        *answer("run_1", "thread_new", "hello"),
    ]
    status, head, events = await create(session, gateway, "/threads/runs", "asst_1")
    assert status == 200 and head["runcast-thread-id"] == "thread_new"
    assert names(events)[-2:] == ["thread.run.completed", "done"]
    assert await channel_exists(gateway, "thread:thread_new")


@pytest.mark.asyncio
async def test_create_thread_and_run_refuses_a_run_of_another_thread_than_it_created(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    thread = {"id": "thread_new", "object": "thread", "created_at": 1, "metadata": {}}
    scripted.runs["asst_1"] = [
        ("thread.created", thread),
        ("thread.run.created", run("run_1", "thread_victim", "queued")),
        *answer("run_1", "thread_victim", "secret"),
    ]
    status, head, events = await create(session, gateway, "/threads/runs", "asst_1")
    assert status == 200 and head.get("runcast-thread-id") in (None, "thread_new")
    assert names(events) == ["thread.created", "runcast.upstream_error"]
    assert orjson.loads(events[-1][1])["reason"] == "protocol_error"
    assert not await channel_exists(gateway, "thread:thread_victim")


@pytest.mark.asyncio
async def test_a_run_moving_to_another_thread_mid_stream_is_a_protocol_error(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        *answer("run_1", "thread_victim", "secret"),
    ]
    head, error = await refused(session, gateway, "/threads/thread_A/runs", "thread.run.created")
    assert head["runcast-thread-id"] == "thread_A" and error["thread_id"] == "thread_A"
    assert "secret" not in orjson.dumps(error).decode()
    assert not await channel_exists(gateway, "thread:thread_victim")


# -- the run ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_another_runs_action_in_a_runs_stream_is_never_answered(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        ("thread.run.requires_action", action("run_victim", "thread_A", "call_v")),
    ]
    scripted.continuations["run_victim"] = answer("run_victim", "thread_A", "answered")
    head, error = await refused(session, gateway, "/threads/thread_A/runs", "thread.run.created")
    assert head["runcast-run-id"] == "run_1" and error["run_id"] == "run_1"
    assert "named another run (run_victim)" in error["error"]["message"]
    await asyncio.sleep(0.2)
    assert scripted.submissions == []
    replayed = await replay(session, gateway, "run_1", head["runcast-subscribe-token"])
    assert b"run_victim" not in upstream_bytes(replayed)
    assert not await channel_exists(gateway, "run:run_victim")


@pytest.mark.asyncio
async def test_a_second_run_created_in_a_runs_stream_is_not_merged_into_it(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        ("thread.run.created", run("run_2", "thread_A", "queued")),
        *answer("run_2", "thread_A", "secret"),
    ]
    head, _ = await refused(session, gateway, "/threads/thread_A/runs", "thread.run.created")
    replayed = await replay(session, gateway, "run_1", head["runcast-subscribe-token"])
    assert b"run_2" not in upstream_bytes(replayed)
    assert b"secret" not in upstream_bytes(replayed)
    assert not await channel_exists(gateway, "run:run_2")


@pytest.mark.asyncio
async def test_a_continuation_starting_another_run_is_refused(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        ("thread.run.requires_action", action("run_1", "thread_A", "call_1")),
    ]
    scripted.continuations["run_1"] = [
        ("thread.run.created", run("run_2", "thread_A", "queued")),
        *answer("run_2", "thread_A", "secret"),
    ]
    status, head, events = await create(session, gateway, "/threads/thread_A/runs", "asst_1")
    assert status == 200
    assert scripted.submissions == [("thread_A", "run_1", ["call_1"])]
    assert names(events)[-1] == "runcast.upstream_error"
    assert "thread.run.completed" not in names(events)
    replayed = await replay(session, gateway, "run_1", head["runcast-subscribe-token"])
    assert b"run_2" not in upstream_bytes(replayed)
    assert not await channel_exists(gateway, "run:run_2")


# -- what recovery and expiry read ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_polled_run_of_another_run_is_not_published_as_this_ones_end(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        ("thread.run.in_progress", run("run_1", "thread_A", "in_progress")),
    ]
    scripted.cut.add("asst_1")
    scripted.polled["run_1"] = run("run_other", "thread_other", "completed")
    status, head, events = await create(session, gateway, "/threads/thread_A/runs", "asst_1")
    assert status == 200
    assert names(events) == [
        "thread.run.created",
        "thread.run.in_progress",
        "runcast.upstream_error",
    ]
    replayed = await replay(session, gateway, "run_1", head["runcast-subscribe-token"])
    assert "thread.run.completed" not in names(replayed)
    assert b"run_other" not in upstream_bytes(replayed)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "polled",
    [
        run("run_other", "thread_A", "completed"),
        run("run_1", "thread_other", "completed"),
        {"status": "completed"},
    ],
    ids=["other-run", "other-thread", "no-ids"],
)
async def test_a_run_read_for_its_status_must_be_that_run(
    upstream: tuple[Upstream, str], polled: dict[str, Any]
) -> None:
    """What expiry and a refused submission read (``fetch_run``), and settling polls."""
    scripted, url = upstream
    scripted.polled["run_1"] = polled
    async with UpstreamClient(UpstreamSettings(base_url=url, max_retries=0)) as client:
        assert await ASSISTANTS.fetch_run(client, "thread_A", "run_1", api_key=None) is None
        found = await ASSISTANTS.poll_settled(client, "thread_A", "run_1", within=0.5, api_key=None)
        assert found is None
        scripted.polled["run_1"] = run("run_1", "thread_A", "completed")
        fetched = await ASSISTANTS.fetch_run(client, "thread_A", "run_1", api_key=None)
        assert fetched is not None and fetched[0] == "completed"


def message(message_id: str, thread_id: str, run_id: str | None, value: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "object": "thread.message",
        "thread_id": thread_id,
        "run_id": run_id,
        "status": "completed",
        "role": "assistant" if run_id else "user",
        "created_at": 1,
        "content": [{"type": "text", "text": {"value": value, "annotations": []}}],
    }


def step(step_id: str, thread_id: str, run_id: str, message_id: str) -> dict[str, Any]:
    details = {"type": "message_creation", "message_creation": {"message_id": message_id}}
    return {
        "id": step_id,
        "object": "thread.run.step",
        "thread_id": thread_id,
        "run_id": run_id,
        "type": "message_creation",
        "status": "completed",
        "created_at": 1,
        "step_details": details,
    }


def cut_run(scripted: Upstream) -> None:
    """run_1 of thread_A: its stream breaks off mid-run, and it is found completed."""
    scripted.runs["asst_1"] = [
        ("thread.run.created", run("run_1", "thread_A", "queued")),
        ("thread.run.in_progress", run("run_1", "thread_A", "in_progress")),
    ]
    scripted.cut.add("asst_1")
    scripted.polled["run_1"] = run("run_1", "thread_A", "completed")


@pytest.mark.asyncio
async def test_a_recovery_publishes_only_the_runs_own_messages_and_steps(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    """A server that ignores the ``run_id`` filter lists the thread's other runs' messages
    (and the user's); one that answers anything lists another thread's."""
    scripted, _ = upstream
    cut_run(scripted)
    scripted.messages = [
        message("msg_user", "thread_A", None, "user question"),
        message("msg_previous", "thread_A", "run_previous", "previous answer"),
        message("msg_1", "thread_A", "run_1", "the answer"),
        message("msg_other", "thread_other", "run_1", "other thread secret"),
    ]
    scripted.steps = [
        step("step_previous", "thread_A", "run_previous", "msg_previous"),
        step("step_1", "thread_A", "run_1", "msg_1"),
    ]
    status, _, events = await create(session, gateway, "/threads/thread_A/runs", "asst_1")
    assert status == 200
    recovered = [orjson.loads(data) for name, data in events if name == "runcast.recovered"]
    assert recovered[0]["missed"] == {"messages": 1, "steps": 1}
    assert names(events)[-5:] == [
        "runcast.recovered",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]
    published = upstream_bytes(events)
    assert b"the answer" in published
    for foreign in (b"user question", b"previous answer", b"other thread secret"):
        assert foreign not in published


@pytest.mark.asyncio
async def test_a_steps_listing_whose_cursor_never_advances_publishes_each_step_once(
    upstream: tuple[Upstream, str], gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    scripted, _ = upstream
    cut_run(scripted)
    scripted.messages = [message("msg_1", "thread_A", "run_1", "the answer")]
    scripted.steps = [step("step_1", "thread_A", "run_1", "msg_1")]
    scripted.steps_never_end = True
    status, _, events = await create(session, gateway, "/threads/thread_A/runs", "asst_1")
    assert status == 200
    assert names(events).count("thread.run.step.completed") == 1
    assert names(events).count("thread.message.completed") == 1
    recovered = [orjson.loads(data) for name, data in events if name == "runcast.recovered"]
    assert recovered[0]["missed"] == {"messages": 1, "steps": 1}
    assert recovered[0]["complete"] is False  # the listing could not be read to its end
    assert scripted.step_pages == 2
