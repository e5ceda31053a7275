"""Recovery after the upstream stream breaks: drops at several points, an outage that a TCP proxy
makes (the upstream keeps the run), and the upstream process killed and restarted.

Every test asserts what each party ends with: SSE and WebSocket subscribers, the creator (the
openai SDK) and the snapshot. On a recovered run all of them end with the upstream's final text,
the settled status, then ``done``; the creator's SDK stream ends normally (no exception).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio
import runcast_e2e_tools
from http_helpers import (
    WAIT,
    Received,
    RecordingHandler,
    StartGateway,
    Subscriber,
    canonical,
    new_thread,
    numbered,
    read_sse,
    sdk_client,
    sse_subscribe,
    stream_run,
    submit_stream,
    subscription_ended,
    ws_subscribe,
)
from outage_proxy import OutageProxy
from tool_helpers import WEATHER, StartTools, final_text, quoted, tool_gateways

from gateway.tools import ToolRegistry

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

AUTH = {"Authorization": "Bearer sk-caller"}


@pytest_asyncio.fixture
async def start_tools() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"]["value"] for part in message["content"] if part["type"] == "text")


def rebuilt_text(events: list[Received], run_id: str) -> str:
    """The run's answer as a chat UI rebuilds it: deltas appended, full messages replacing."""
    texts: dict[str, str] = {}
    for event in events:
        if event.event == "thread.message.delta":
            delta = event.json()
            for part in delta["delta"].get("content", []):
                if part["type"] == "text":
                    value = part["text"].get("value", "")
                    texts[delta["id"]] = texts.get(delta["id"], "") + value
        elif event.event.startswith("thread.message."):
            message = event.json()
            if message["run_id"] == run_id and message["role"] == "assistant":
                texts[message["id"]] = text_of(message)
    return "".join(texts.values())


async def upstream_messages(
    session: aiohttp.ClientSession, v1: str, thread_id: str, run_id: str
) -> list[dict[str, Any]]:
    """The run's messages as the upstream returns them (through runcast's proxy)."""
    url = f"{v1}/threads/{thread_id}/messages"
    query = {"run_id": run_id, "order": "asc"}
    async with session.get(url, params=query, headers=AUTH) as response:
        assert response.status == 200
        data: list[dict[str, Any]] = (await response.json())["data"]
    return data


async def snapshot(session: aiohttp.ClientSession, url: str, run_id: str) -> dict[str, Any]:
    async with session.get(f"{url}/streams/runs/{run_id}/snapshot") as response:
        assert response.status == 200
        body: dict[str, Any] = (await response.json())["snapshot"]
    return body


def snapshot_text(snap: dict[str, Any]) -> str:
    return "".join(text_of(m) for m in snap["messages"] if m["role"] == "assistant")


def after(sub: Subscriber, name: str) -> list[str]:
    """Event names from ``name`` on."""
    return sub.names[sub.names.index(name) :]


# -- drops at several points, the simulator as upstream --------------------------------------------


@pytest.mark.asyncio
async def test_drop_during_text_deltas_everyone_ends_with_the_full_answer(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 20, "delay_ms": 2})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    channel = f"{gateway.url}/streams/threads/{thread_id}"
    sse_response, sse_task = await sse_subscribe(session, channel)
    ws, ws_task = await ws_subscribe(session, channel)

    creator = await stream_run(sdk, assistant_id, thread_id, "drop")  # no exception
    sse = await subscription_ended(sse_response, sse_task)
    async with asyncio.timeout(WAIT):
        websocket = await ws_task
    await ws.close()
    await sdk.close()
    run_id = creator.run_id
    assert run_id is not None

    (message,) = await upstream_messages(session, gateway.v1, thread_id, run_id)
    answer = text_of(message)
    assert len(answer.split()) == 20 * 2
    assert after(sse, "runcast.upstream_error") == [
        "runcast.upstream_error",
        "runcast.recovered",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]
    error = sse.events[sse.names.index("runcast.upstream_error")].json()
    assert error["reason"] == "stream_truncated" and error["last_status"] == "in_progress"
    recovered = sse.events[sse.names.index("runcast.recovered")].json()
    assert recovered == {
        "run_id": run_id,
        "thread_id": thread_id,
        "reason": "stream_truncated",
        "status": "completed",
        "missed": {"messages": 1, "steps": 1},
        "complete": True,
    }
    # The message cut mid-delta is published whole, as the upstream returns it.
    completed = sse.events[sse.names.index("thread.message.completed")]
    assert completed.json() == message
    assert 0 < sse.names.count("thread.message.delta") < 20
    assert rebuilt_text(sse.events, run_id) == answer
    assert numbered(sse.events) == numbered(websocket.events)
    assert sse.seqs == list(range(1, len(sse.events) + 1))

    # The creator got the same events but the failure notice, and its SDK stream ended normally.
    assert [*creator.seen, ("done", "[DONE]")] == canonical(sse.upstream)
    assert creator.seen[-1][0] == "thread.run.completed"
    assert final_text(creator) == answer
    # The SDK hands the notice on untyped (spec §6.2): the creator can tell a recovery happened.
    assert creator.untyped == [recovered]

    snap = await snapshot(session, gateway.url, run_id)
    assert snap["status"] == "completed" and snap["done"] is True
    assert snapshot_text(snap) == answer


RECOVERED_ACTION = [
    "runcast.upstream_error",
    "runcast.recovered",
    "thread.run.step.in_progress",  # the step cut mid-arguments, republished whole
    "thread.run.requires_action",
    "done",
]
# An EOF right after requires_action is the normal end of that response (upstream/assistants/stream.py):
# nothing was missed, and the segment ends as a live one does.
CLEAN_ACTION = ["thread.run.step.delta", "thread.run.requires_action", "done"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scenario", "tail"),
    [("drop_mid_tool_call", RECOVERED_ACTION), ("drop_after_requires_action", CLEAN_ACTION)],
)
async def test_drop_in_a_tool_round_recovers_the_action_for_the_creator(
    start_gateway: StartGateway, session: aiohttp.ClientSession, scenario: str, tail: list[str]
) -> None:
    gateway = await start_gateway()
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    channel = f"{gateway.url}/streams/threads/{thread_id}"
    sse_response, sse_task = await sse_subscribe(session, channel, stop_at_done=2)
    ws, ws_task = await ws_subscribe(session, f"{channel}")

    creator = await stream_run(sdk, assistant_id, thread_id, scenario)
    run_id = creator.run_id
    assert run_id is not None
    # The creator's stream ended at the action, as a live one does, and the SDK can answer it.
    assert creator.seen[-1][0] == "thread.run.requires_action"
    run = openai.types.beta.threads.Run.model_validate(creator.seen[-1][1])
    (call,) = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    # Before the answer, the snapshot already holds the whole arguments.
    snap = await snapshot(session, gateway.url, run_id)
    assert snap["status"] == "requires_action"
    (step,) = snap["steps"]
    assert step["step_details"]["tool_calls"][0]["function"]["arguments"] == call.function.arguments

    continuation = await submit_stream(sdk, run, lambda call: "sunny")
    sse = await subscription_ended(sse_response, sse_task)
    async with asyncio.timeout(WAIT):
        websocket = await ws_task  # a WebSocket subscriber: to the first `done`
    await ws.close()
    await sdk.close()

    first = sse.names[: sse.names.index("done") + 1]
    assert first[-len(tail) :] == tail
    assert first.count("runcast.upstream_error") == tail.count("runcast.upstream_error")
    if "runcast.recovered" in first:
        recovered = sse.events[sse.names.index("runcast.recovered")].json()
        assert recovered["status"] == "requires_action"
        assert recovered["missed"] == {"messages": 0, "steps": 1}
    assert numbered(websocket.events) == numbered(sse.events[: len(first)])

    (message,) = await upstream_messages(session, gateway.v1, thread_id, run_id)
    answer = text_of(message)
    assert answer.startswith(quoted("get_weather", "sunny"))
    assert sse.names[-2:] == ["thread.run.completed", "done"]
    assert rebuilt_text(sse.events, run_id) == answer
    assert final_text(continuation) == answer
    snap = await snapshot(session, gateway.url, run_id)
    assert snap["status"] == "completed" and snap["done"] is True
    assert snapshot_text(snap) == answer


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", ["drop_mid_tool_call", "drop_after_requires_action"])
async def test_tool_automation_answers_an_action_found_by_recovery(
    start_tools: StartTools, session: aiohttp.ClientSession, scenario: str
) -> None:
    tg = await start_tools(ToolRegistry.from_module(runcast_e2e_tools))
    gateway = tg.gateway
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    channel = f"{gateway.url}/streams/threads/{thread_id}"
    sse_response, sse_task = await sse_subscribe(session, channel)

    creator = await stream_run(sdk, assistant_id, thread_id, scenario)
    sse = await subscription_ended(sse_response, sse_task)
    await sdk.close()
    run_id = creator.run_id
    assert run_id is not None

    # runcast answered the recovered action once; the creator saw the run through to its end.
    assert [run for run, _ in tg.sim.accepted] == [run_id]
    (outputs,) = [outputs for _, outputs in tg.sim.accepted]
    (output,) = outputs.values()
    assert [name for name, _ in creator.seen][-1] == "thread.run.completed"
    (message,) = await upstream_messages(session, gateway.v1, thread_id, run_id)
    answer = text_of(message)
    assert quoted("get_weather", output) in answer
    assert final_text(creator) == answer

    # Subscribers: one segment, recovered, the action, its tool events, the continuation.
    names = sse.names
    assert names.count("done") == 1 and names[-2:] == ["thread.run.completed", "done"]
    if scenario == "drop_mid_tool_call":
        assert names.index("runcast.upstream_error") < names.index("runcast.recovered")
        assert names.index("runcast.recovered") < names.index("runcast.tool_call.completed")
    else:
        assert "runcast.upstream_error" not in names  # a clean end of that response
    assert rebuilt_text(sse.events, run_id) == answer
    snap = await snapshot(session, gateway.url, run_id)
    assert snap["status"] == "completed" and snapshot_text(snap) == answer


# -- an outage between runcast and an upstream that keeps the run ------------------------------------


async def sim_port(start_sim: Any, **settings: Any) -> int:
    url: str = await start_sim(**settings)
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def until_deltas(events: list[Received], count: int) -> None:
    async with asyncio.timeout(WAIT):
        while sum(e.event == "thread.message.delta" for e in events) < count:
            await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_polling_outlasts_a_two_second_outage(
    start_gateway: StartGateway, start_sim: Any, session: aiohttp.ClientSession
) -> None:
    proxy = OutageProxy(await sim_port(start_sim, deltas=40, delay_ms=10))
    await proxy.start()
    try:
        gateway = await start_gateway(upstream_url=proxy.url, recovery_timeout=10.0)
        sdk = sdk_client(gateway)
        assistant_id, thread_id = await new_thread(sdk)
        channel = f"{gateway.url}/streams/threads/{thread_id}"
        sse_response = await session.get(channel)
        assert sse_response.status == 200
        ws, ws_task = await ws_subscribe(session, channel)
        sub = Subscriber()
        reader = asyncio.create_task(read_sse(sse_response, sub))
        creator_task = asyncio.create_task(stream_run(sdk, assistant_id, thread_id))
        try:
            await until_deltas(sub.events, 5)
            await proxy.cut()
            cut_at = time.monotonic()
            # Outage: the upstream is unreachable (connections refused) for 2 s, then back.
            await asyncio.sleep(2.0)
            await proxy.restore()
            async with asyncio.timeout(WAIT):
                creator = await creator_task
                await reader
            recovered_after = time.monotonic() - cut_at
        finally:
            creator_task.cancel()
            reader.cancel()
        sse_response.close()
        async with asyncio.timeout(WAIT):
            websocket = await ws_task
        await ws.close()
        await sdk.close()
        run_id = creator.run_id
        assert run_id is not None

        (message,) = await upstream_messages(session, gateway.v1, thread_id, run_id)
        answer = text_of(message)
        assert after(sub, "runcast.upstream_error") == [
            "runcast.upstream_error",
            "runcast.recovered",
            "thread.message.completed",
            "thread.run.step.completed",
            "thread.run.completed",
            "done",
        ]
        # Polling went on through the outage, and found the run soon after it ended.
        assert 2.0 <= recovered_after < 2.0 + 3.0
        assert rebuilt_text(sub.events, run_id) == answer
        assert numbered(websocket.events) == numbered(sub.events)
        assert final_text(creator) == answer
        assert creator.seen[-1][0] == "thread.run.completed"
        snap = await snapshot(session, gateway.url, run_id)
        assert snap["status"] == "completed" and snapshot_text(snap) == answer
    finally:
        await proxy.aclose()


@pytest.mark.asyncio
async def test_an_outage_past_the_deadline_ends_the_run_for_everyone(
    start_gateway: StartGateway, start_sim: Any, session: aiohttp.ClientSession
) -> None:
    proxy = OutageProxy(await sim_port(start_sim, deltas=40, delay_ms=10))
    await proxy.start()
    try:
        gateway = await start_gateway(upstream_url=proxy.url, recovery_timeout=1.5)
        sdk = sdk_client(gateway)
        assistant_id, thread_id = await new_thread(sdk)
        sse_response, sse_task = await sse_subscribe(
            session, f"{gateway.url}/streams/threads/{thread_id}"
        )
        handler = RecordingHandler()
        creator_task = asyncio.create_task(
            stream_run(sdk, assistant_id, thread_id, handler=handler)
        )
        ended: list[float] = []
        creator_task.add_done_callback(lambda _: ended.append(time.monotonic()))
        try:
            async with asyncio.timeout(WAIT):
                while handler.deltas < 5:
                    await asyncio.sleep(0.005)
            # Taken before the cut: the relay may see the failure before cut() returns.
            cut_at = time.monotonic()
            await proxy.cut()
            # The creator is told once runcast gives up: the SDK raises, it does not hang.
            with pytest.raises(openai.APIError) as caught:
                async with asyncio.timeout(WAIT):
                    await creator_task
            gave_up_after = ended[0] - cut_at
        finally:
            creator_task.cancel()
        sub = await subscription_ended(sse_response, sse_task)
        await sdk.close()
        assert "ended without 'done'" in caught.value.message or "lost" in caught.value.message
        assert 1.5 <= gave_up_after < 1.5 + 2.0
        assert after(sub, "runcast.upstream_error") == ["runcast.upstream_error", "done"]
        # Once the upstream is back, the snapshot still shows where the run was left.
        await proxy.restore()
        assert handler.run_id is not None
        snap = await snapshot(session, gateway.url, handler.run_id)
        assert snap["status"] == "in_progress" and snap["done"] is True
    finally:
        await proxy.aclose()


# -- the upstream process killed and restarted ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_mock_process(port: int) -> asyncio.subprocess.Process:
    """``runcast mock`` on ``port``, once it listens."""
    argv = ["--port", str(port), "--deltas", "60", "--delay-ms", "10", "--poll-after-ms", "50"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.mock.cli", *argv, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT):
        line = await proc.stdout.readline()
    assert b"listening on" in line, line
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


@pytest.mark.asyncio
async def test_upstream_killed_and_restarted_without_the_run_ends_it_cleanly(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    procs = [await start_mock_process(port)]
    try:
        gateway = await start_gateway(
            upstream_url=f"http://127.0.0.1:{port}/v1", recovery_timeout=8.0
        )
        sdk = sdk_client(gateway)
        assistant_id, thread_id = await new_thread(sdk)
        sse_response, sse_task = await sse_subscribe(
            session, f"{gateway.url}/streams/threads/{thread_id}"
        )
        handler = RecordingHandler()
        creator_task = asyncio.create_task(
            stream_run(sdk, assistant_id, thread_id, handler=handler)
        )
        ended: list[float] = []
        creator_task.add_done_callback(lambda _: ended.append(time.monotonic()))
        try:
            async with asyncio.timeout(WAIT):
                while handler.deltas < 5:
                    await asyncio.sleep(0.005)
            procs[0].kill()  # SIGKILL: the run and everything the simulator knew are gone
            await procs[0].wait()
            killed_at = time.monotonic()
            await asyncio.sleep(2.0)
            procs.append(await start_mock_process(port))
            with pytest.raises(openai.APIError):
                async with asyncio.timeout(WAIT):
                    await creator_task
            ended_after = ended[0] - killed_at
        finally:
            creator_task.cancel()
        sub = await subscription_ended(sse_response, sse_task)
        await sdk.close()
        # Refused connections did not end the recovery; the restarted upstream's 404 did.
        assert 2.0 <= ended_after < 8.0
        assert after(sub, "runcast.upstream_error") == ["runcast.upstream_error", "done"]
        error = sub.events[sub.names.index("runcast.upstream_error")].json()
        assert error["run_id"] == handler.run_id and error["last_status"] == "in_progress"
        assert handler.run_id is not None
        snap = await snapshot(session, gateway.url, handler.run_id)
        assert snap["status"] == "in_progress" and snap["done"] is True
        async with session.get(f"{gateway.url}/healthz") as health:
            assert (await health.json())["status"] == "ok"
    finally:
        for proc in procs:
            await stop(proc)


def test_recovered_payload_is_json() -> None:
    """The notice documented in the README decodes as the fields it lists."""
    from gateway.runs.missed import Missed
    from gateway.runs.recovery import Recovery, recovered_event

    recovery = Recovery(
        status="completed",
        run=b"{}",
        missed=Missed(events=[], messages=2, steps=1, complete=True),
    )
    event = recovered_event(recovery, reason="idle_timeout", run_id="run_1", thread_id="thread_1")
    assert event.name == "runcast.recovered"
    assert orjson.loads(event.data) == {
        "run_id": "run_1",
        "thread_id": "thread_1",
        "reason": "idle_timeout",
        "status": "completed",
        "missed": {"messages": 2, "steps": 1},
        "complete": True,
    }
