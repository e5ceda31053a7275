"""Server-side run life: background progress, cancel, expiry, dropped and vanished clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest
from mock_helpers import (
    HEADERS,
    SSE,
    WEATHER_TOOL,
    MockAPI,
    MockServer,
    StartMock,
    collapse,
    parse_sse,
)


async def read_event(resp: aiohttp.ClientResponse) -> SSE:
    block = await resp.content.readuntil(b"\n\n")
    (event,) = parse_sse(block)
    return event


async def open_stream(api: MockAPI, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
    resp = await api.session.post(
        api.base_url + path, json={**body, "stream": True}, headers=HEADERS
    )
    assert resp.status == 200
    return resp


async def client_for(
    start_mock: StartMock, session: aiohttp.ClientSession, **settings: Any
) -> MockAPI:
    server: MockServer = await start_mock(**settings)
    return MockAPI(session, server.base_url)


@pytest.mark.asyncio
async def test_non_streamed_run_progresses_in_background(api: MockAPI) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    run = await api.ok("POST", f"/threads/{tid}/runs", {"assistant_id": assistant["id"]})
    assert run["status"] == "queued"
    done = await api.wait_status(tid, run["id"], "completed")
    assert done["usage"] is not None and done["expires_at"] is None
    steps = await api.ok("GET", f"/threads/{tid}/runs/{run['id']}/steps")
    (step,) = steps["data"]
    message_id = step["step_details"]["message_creation"]["message_id"]
    message = await api.ok("GET", f"/threads/{tid}/messages/{message_id}")
    assert message["status"] == "completed" and message["run_id"] == run["id"]
    assert len(message["content"][0]["text"]["value"].split()) == 12


@pytest.mark.asyncio
async def test_cancel_mid_stream(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    api = await client_for(start_mock, session, deltas=400, delay_ms=10)
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    resp = await open_stream(api, f"/threads/{tid}/runs", {"assistant_id": assistant["id"]})
    async with resp:
        seen = [await read_event(resp)]
        while seen[-1].event != "thread.message.delta":
            seen.append(await read_event(resp))
        run_id = seen[0].json()["id"]
        cancelling = await api.ok("POST", f"/threads/{tid}/runs/{run_id}/cancel")
        assert cancelling["status"] == "cancelling"
        seen += parse_sse(await resp.read())
    names = [e.event for e in seen]
    assert names[-5:] == [
        "thread.run.cancelling",
        "thread.message.incomplete",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
        "done",
    ]
    assert names.count("thread.message.delta") < 400
    final = seen[-2].json()
    assert final["cancelled_at"] is not None and final["expires_at"] is None and final["usage"]
    assert seen[-4].json()["incomplete_details"] == {"reason": "run_cancelled"}
    run = await api.ok("GET", f"/threads/{tid}/runs/{run_id}")
    assert run["status"] == "cancelled"


@pytest.mark.asyncio
async def test_cancel_non_streamed_and_in_requires_action(api: MockAPI) -> None:
    assistant = await api.assistant(WEATHER_TOOL)
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": "tool_call"}}
    run = await api.ok("POST", f"/threads/{tid}/runs", body)
    await api.wait_status(tid, run["id"], "requires_action")
    cancelling = await api.ok("POST", f"/threads/{tid}/runs/{run['id']}/cancel")
    assert cancelling["status"] == "cancelling"
    cancelled = await api.wait_status(tid, run["id"], "cancelled")
    assert cancelled["required_action"] is None
    steps = await api.ok("GET", f"/threads/{tid}/runs/{run['id']}/steps")
    assert steps["data"][0]["status"] == "cancelled"
    assert steps["data"][0]["cancelled_at"] is not None


@pytest.mark.asyncio
async def test_requires_action_expires(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, expires_in=0.3)
    assistant = await api.assistant(WEATHER_TOOL)
    tid = (await api.thread())["id"]
    events = await api.run_stream(tid, assistant["id"], "tool_call")
    run = events[-2].json()
    assert run["status"] == "requires_action"
    assert run["expires_at"] == run["created_at"] + 1  # 0.3 s rounds up to whole seconds
    expired = await api.wait_status(tid, run["id"], "expired")
    assert expired["expires_at"] is None and expired["required_action"] is None
    steps = await api.ok("GET", f"/threads/{tid}/runs/{run['id']}/steps")
    assert steps["data"][0]["status"] == "expired" and steps["data"][0]["expired_at"]
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    body = {"tool_outputs": [{"tool_call_id": call_id, "output": "late"}]}
    status, data, _ = await api.call(
        "POST", f"/threads/{tid}/runs/{run['id']}/submit_tool_outputs", body
    )
    assert status == 400
    assert data["error"]["message"] == 'Runs in status "expired" do not accept tool outputs.'
    await api.run_stream(tid, assistant["id"])  # the thread is free again


@pytest.mark.asyncio
async def test_drop_truncates_stream_but_run_completes(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, deltas=40, delay_ms=2)
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": "drop"}}
    received = bytearray()
    resp = await open_stream(api, f"/threads/{tid}/runs", body)
    async with resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    events = parse_sse(bytes(received))  # cut between whole events, never inside one
    names = [e.event for e in events]
    assert "done" not in names and names[-1] == "thread.message.delta"
    assert names.count("thread.message.delta") == 20
    run_id = events[0].json()["id"]
    run = await api.wait_status(tid, run_id, "completed")
    assert run["usage"] is not None
    messages = await api.ok("GET", f"/threads/{tid}/messages?run_id={run_id}")
    full = messages["data"][0]["content"][0]["text"]["value"]
    partial = "".join(e.json()["delta"]["content"][0]["text"]["value"] for e in events[7:])
    assert full.startswith(partial) and len(full.split()) == 80


async def read_until_cut(resp: aiohttp.ClientResponse) -> list[SSE]:
    """Every whole event of a stream the simulator cuts mid-body."""
    received = bytearray()
    async with resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    return parse_sse(bytes(received))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scenario", "last"),
    [
        ("drop_mid_tool_call", "thread.run.step.delta"),
        ("drop_after_requires_action", "thread.run.requires_action"),
    ],
)
async def test_drop_points_in_a_tool_round(
    start_mock: StartMock, session: aiohttp.ClientSession, scenario: str, last: str
) -> None:
    api = await client_for(start_mock, session)
    assistant = await api.assistant(WEATHER_TOOL)
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": scenario}}
    events = await read_until_cut(await open_stream(api, f"/threads/{tid}/runs", body))
    names = [e.event for e in events]
    assert "done" not in names and names[-1] == last
    run_id = events[0].json()["id"]
    # The run went on server-side to its action, whose arguments are whole.
    run = await api.wait_status(tid, run_id, "requires_action")
    (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    json.loads(call["function"]["arguments"])
    if scenario == "drop_mid_tool_call":
        # Cut after the call's head and its first argument fragment only.
        assert names.count("thread.run.step.delta") == 2
        streamed = events[-1].json()["delta"]["step_details"]["tool_calls"][0]
        assert call["function"]["arguments"].startswith(streamed["function"]["arguments"])
        assert call["function"]["arguments"] != streamed["function"]["arguments"]
    # The continuation streams normally, to its end.
    after = await api.submit(tid, run_id, {call["id"]: "sunny"})
    assert [e.event for e in after][-2:] == ["thread.run.completed", "done"]


@pytest.mark.asyncio
async def test_run_carries_on_after_client_disconnects(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, deltas=100, delay_ms=2)
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    resp = await open_stream(api, f"/threads/{tid}/runs", {"assistant_id": assistant["id"]})
    first = await read_event(resp)
    resp.close()
    run = await api.wait_status(tid, first.json()["id"], "completed")
    assert run["completed_at"] is not None


@pytest.mark.asyncio
async def test_slow_start_holds_first_byte(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, slow_start_ms=5000)
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": "slow_start"}}
    stream = asyncio.create_task(api.stream(f"/threads/{tid}/runs", body))
    try:
        run = None
        while run is None:
            runs = await api.ok("GET", f"/threads/{tid}/runs")
            run = runs["data"][0] if runs["data"] else None
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not stream.done()  # 5 s of slow start: not even the status line yet
        assert run["status"] == "queued"
        await api.ok("POST", f"/threads/{tid}/runs/{run['id']}/cancel")
        events = await stream
    finally:
        stream.cancel()
    assert [e.event for e in events] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.cancelling",
        "thread.run.cancelled",
        "done",
    ]


@pytest.mark.asyncio
async def test_slow_start_then_normal_stream(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, slow_start_ms=20)
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    events = await api.run_stream(tid, assistant["id"], "slow_start")
    assert collapse([e.event for e in events])[-4:] == [
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]


@pytest.mark.asyncio
async def test_default_scenario_comes_from_settings(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    api = await client_for(start_mock, session, scenario="incomplete")
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    events = await api.run_stream(tid, assistant["id"])
    assert events[-2].event == "thread.run.incomplete"
    events = await api.run_stream(tid, assistant["id"], "text")
    assert events[-2].event == "thread.run.completed"


@pytest.mark.asyncio
async def test_shutdown_ends_open_streams_and_runs(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(deltas=10_000, delay_ms=50)
    api = MockAPI(session, server.base_url)
    assistant = await api.assistant(WEATHER_TOOL)
    waiting = await api.thread()
    await api.run_stream(waiting["id"], assistant["id"], "tool_call")  # parked in requires_action
    tid = (await api.thread())["id"]
    resp = await open_stream(api, f"/threads/{tid}/runs", {"assistant_id": assistant["id"]})
    async with resp:
        await read_event(resp)
        assert server.service.engine.statistics().active_runs == 2
        # Without the engine stopping its runs, aiohttp would wait out its 30 s shutdown timeout.
        async with asyncio.timeout(10):
            await server.runner.cleanup()
        rest = bytearray()
        with contextlib.suppress(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                rest += chunk
    assert b"event: done" not in rest
    assert server.service.engine.statistics().active_runs == 0
