"""Taking over a dead owner's run at an action (gateway/runs/takeover.py), in process.

A gateway node on a private ``redis-server`` finds in the shared state a run whose owner's lease
lapsed (written here as the dead owner would have left it: a live record and a submission mark),
takes it over and follows it at the simulator. A ``submitting`` mark on a run that ended
``cancelled`` cannot be settled: ``runcast.tool_automation.unknown`` and nothing submitted. The
same mark on a run still waiting at the same action: the outputs were not taken, so the taker
answers it, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from http_helpers import (
    WAIT,
    StartGateway,
    new_thread,
    sdk_client,
    served_upstream,
    sse_subscribe,
    stream_run,
    subscription_ended,
)
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py
from test_http_actions import EchoTools
from tool_helpers import SIM_DEFAULTS, WEATHER, SimLog, _record_submissions

from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.runs.channels import run_channel
from gateway.runs.takeover import submission_unknown
from gateway.state import LiveRun, MemorySubmissionMarks, SharedState, SubmissionMark
from gateway.state.marks import SubmitState
from gateway.state.redis import (
    STATE_NAMESPACE,
    RedisLiveRuns,
    RedisSubmissionMarks,
    state_client,
)

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
]

HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[tuple[str, SimLog]]:
    log = SimLog()
    app = create_simulator(MockSettings(**SIM_DEFAULTS))
    _record_submissions(app, log)
    async with served_upstream(app) as url:
        yield url, log


async def _run_at_action(session: aiohttp.ClientSession, upstream: str) -> dict[str, Any]:
    """A run at ``requires_action`` created at the simulator itself (no runcast node owns it)."""
    async with session.post(
        f"{upstream}/assistants", json={"model": "gpt-4o", "tools": [WEATHER]}, headers=HEADERS
    ) as r:
        assistant = (await r.json())["id"]
    async with session.post(f"{upstream}/threads", json={}, headers=HEADERS) as r:
        thread = (await r.json())["id"]
    async with session.post(
        f"{upstream}/threads/{thread}/runs",
        json={"assistant_id": assistant, "metadata": {"mock_scenario": "tool_call"}},
        headers=HEADERS,
    ) as r:
        run: dict[str, Any] = await r.json()
    return await _wait_status(session, upstream, run, "requires_action")


async def _wait_status(
    session: aiohttp.ClientSession, upstream: str, run: dict[str, Any], status: str
) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            url = f"{upstream}/threads/{run['thread_id']}/runs/{run['id']}"
            async with session.get(url, headers=HEADERS) as r:
                run = await r.json()
            if run["status"] == status:
                return run
            await asyncio.sleep(0.05)


async def _orphan(redis_url: str, run: dict[str, Any], *, mark: bool) -> tuple[str, ...]:
    """Leave ``run`` as a dead owner would: live, its lease lapsed, optionally ``submitting``."""
    ids = tuple(c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"])
    client = state_client(redis_url)
    try:
        if mark:
            marks = RedisSubmissionMarks(client, namespace=STATE_NAMESPACE)
            await marks.mark(run["id"], ids, "submitting")
        live = RedisLiveRuns(client, namespace=STATE_NAMESPACE)
        orphan = LiveRun(
            run_id=run["id"],
            thread_id=run["thread_id"],
            api_key="sk-caller",
            expires_at=time.time() - 1,
        )
        await live.put(orphan)
    finally:
        await client.aclose()
    return ids


async def _followed(
    session: aiohttp.ClientSession, gateway_url: str, run_id: str, broker: Any
) -> list[tuple[str, Any]]:
    """The run channel's events once the taker closed it."""
    async with asyncio.timeout(WAIT):
        while True:
            info = await broker.channel_info(run_channel(run_id))
            if info is not None and info.ended:
                break
            await asyncio.sleep(0.05)
    response, subscriber = await sse_subscribe(
        session, f"{gateway_url}/streams/runs/{run_id}?since=0"
    )
    sub = await subscription_ended(response, subscriber)
    return [(e.event, None if e.data == b"[DONE]" else orjson.loads(e.data)) for e in sub.events]


async def test_a_submitting_mark_the_runs_end_cannot_settle_is_reported_unknown(
    start_gateway: StartGateway,
    redis_server: RedisServer,
    sim: tuple[str, SimLog],
    session: aiohttp.ClientSession,
) -> None:
    redis_server.flush()
    upstream, log = sim
    tools = EchoTools()
    gateway = await start_gateway(
        upstream_url=upstream,
        broker=redis_server.url,
        node_id="b",
        lease_ttl=0.3,
        action_handler=tools,
    )
    run = await _run_at_action(session, upstream)
    async with session.post(
        f"{upstream}/threads/{run['thread_id']}/runs/{run['id']}/cancel", headers=HEADERS
    ) as r:
        assert r.status == 200
    await _wait_status(session, upstream, run, "cancelled")
    ids = await _orphan(redis_server.url, run, mark=True)

    events = await _followed(session, gateway.url, run["id"], gateway.broker)
    names = [name for name, _ in events]
    assert names[0] == "runcast.tool_automation.unknown"
    unknown = events[0][1]
    assert unknown["run_id"] == run["id"] and unknown["thread_id"] == run["thread_id"]
    assert unknown["tool_call_ids"] == list(ids) and "cancelled" in unknown["reason"]
    assert names[1] == "runcast.recovered" and events[1][1]["reason"] == "owner_lost"
    assert names[-2:] == ["thread.run.cancelled", "done"]
    assert log.requests == [] and tools.actions == []  # nothing run, nothing submitted
    assert gateway.relays.statistics().taken_over == 1


async def test_a_run_still_at_the_marked_action_is_answered_once_by_the_taker(
    start_gateway: StartGateway,
    redis_server: RedisServer,
    sim: tuple[str, SimLog],
    session: aiohttp.ClientSession,
) -> None:
    redis_server.flush()
    upstream, log = sim
    tools = EchoTools()
    gateway = await start_gateway(
        upstream_url=upstream,
        broker=redis_server.url,
        node_id="b",
        lease_ttl=0.3,
        action_handler=tools,
    )
    run = await _run_at_action(session, upstream)
    ids = await _orphan(redis_server.url, run, mark=True)

    events = await _followed(session, gateway.url, run["id"], gateway.broker)
    names = [name for name, _ in events]
    assert "runcast.tool_automation.unknown" not in names
    assert names[0] == "runcast.recovered" and events[0][1]["status"] == "requires_action"
    assert names.count("thread.run.requires_action") == 1
    assert names[-2:] == ["thread.run.completed", "done"]
    assert tools.actions == [list(ids)]
    assert log.requests == [run["id"]] and len(log.accepted) == 1


@pytest.mark.parametrize(
    ("state", "status", "unknown"),
    [
        (None, "cancelled", False),  # no mark: nothing was being submitted
        ("submitted", "expired", False),  # accepted: the run's end is the upstream's to tell
        ("submitting", "requires_action", False),  # still waiting: the outputs were not taken
        ("submitting", "completed", False),  # it went on past the action: they were
        ("submitting", "incomplete", False),
        ("submitting", "cancelled", True),
        ("submitting", "expired", True),
        ("submitting", "failed", True),
        ("submitting", None, True),  # the run could not be read
    ],
)
async def test_which_dead_owners_submissions_are_unknown(
    state: str | None, status: str | None, unknown: bool
) -> None:
    mark = None if state is None else SubmissionMark(call_ids=("call_1",), state=state)  # type: ignore[arg-type]
    assert submission_unknown(mark, status) is unknown


class RecordingMarks(MemorySubmissionMarks):
    """Submission marks that remember every change, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[str, tuple[str, ...] | None, str]] = []

    async def mark(self, run_id: str, call_ids: tuple[str, ...], state: SubmitState) -> None:
        self.changes.append((run_id, call_ids, state))
        await super().mark(run_id, call_ids, state)

    async def forget(self, run_id: str) -> None:
        self.changes.append((run_id, None, "forgotten"))
        await super().forget(run_id)


async def test_the_owner_marks_submitting_before_the_post_and_submitted_after(
    start_gateway: StartGateway, sim: tuple[str, SimLog]
) -> None:
    upstream, log = sim
    marks = RecordingMarks()
    tools = EchoTools()
    gateway = await start_gateway(
        upstream_url=upstream,
        action_handler=tools,
        state=dataclasses.replace(SharedState.memory(), marks=marks),
    )
    posted: list[list[str]] = []

    class Requests(list[str]):
        """The simulator's submission log, noting what the marks said at each submission."""

        def append(self, run_id: str) -> None:
            posted.append([state for _, _, state in marks.changes])
            super().append(run_id)

    log.requests = Requests()
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
        creator = await stream_run(sdk, assistant_id, thread_id, "tool_call")
    finally:
        await sdk.close()
    run_id = creator.run_id
    assert run_id is not None and tools.actions
    ids = tuple(tools.actions[0])
    assert posted == [["submitting"]]
    assert marks.changes == [
        (run_id, ids, "submitting"),
        (run_id, ids, "submitted"),
        (run_id, None, "forgotten"),
    ]


async def test_a_submitting_mark_on_a_run_that_cannot_be_read_is_reported_unknown(
    start_gateway: StartGateway, redis_server: RedisServer, session: aiohttp.ClientSession
) -> None:
    redis_server.flush()
    with socket.socket() as closed:  # a port nothing listens on: every run read fails
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    tools = EchoTools()
    gateway = await start_gateway(
        upstream_url=dead,
        broker=redis_server.url,
        node_id="b",
        lease_ttl=0.3,
        recovery_timeout=0.5,
        action_handler=tools,
    )
    run = {
        "id": "run_orphan",
        "thread_id": "thread_orphan",
        "required_action": {"submit_tool_outputs": {"tool_calls": [{"id": "call_1"}]}},
    }
    await _orphan(redis_server.url, run, mark=True)

    events = await _followed(session, gateway.url, "run_orphan", gateway.broker)
    names = [name for name, _ in events]
    assert names == ["runcast.tool_automation.unknown", "runcast.upstream_error", "done"]
    assert events[0][1]["tool_call_ids"] == ["call_1"]
    assert events[0][1]["reason"] == "the run could not be read"
    assert tools.actions == []
