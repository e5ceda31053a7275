"""Tool automation under pressure: one submission per action, deadlines, clients that race.

Every submission that reaches the simulator is recorded, so "exactly once" and "never" are
counted where they matter: at the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import (
    WAIT,
    Received,
    RecordingHandler,
    Subscriber,
    new_thread,
    numbered,
    read_sse,
    sdk_client,
    sse_subscribe,
    stream_run,
    submit_stream,
    subscription_ended,
)
from openai import AsyncOpenAI
from tool_helpers import (
    CUSTOMER,
    WEATHER,
    StartTools,
    final_text,
    quoted,
    tool_gateways,
)

from gateway.runs.actions import HeldAction
from gateway.tools import Submit, ToolOutput, ToolRegistry
from gateway.tools.events import Emit
from parsers.sse import SSEDecoder

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest_asyncio.fixture
async def start_tools() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


class Gate:
    """A tool handler that waits until the test opens the gate; records starts and cancels."""

    def __init__(self, output: str = "gated answer") -> None:
        self.output = output
        self.opened = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0

    async def __call__(self, city: str) -> str:
        self.started.set()
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.output

    def registry(self) -> ToolRegistry:
        registry = ToolRegistry()
        registry.register(self, name="get_weather")
        return registry


class SdkRun:
    """The SDK creator's ``runs.stream`` running in a task (it never submits anything)."""

    def __init__(self, client: AsyncOpenAI, assistant_id: str, thread_id: str, scenario: str):
        self.handler = RecordingHandler()
        self.task = asyncio.create_task(
            stream_run(client, assistant_id, thread_id, scenario, handler=self.handler)
        )

    async def run_id(self) -> str:
        async with asyncio.timeout(WAIT):
            await self.handler.run_started.wait()
        assert self.handler.run_id is not None
        return self.handler.run_id

    async def finished(self) -> RecordingHandler:
        async with asyncio.timeout(WAIT):
            await self.task
        return self.handler


async def wait_for_status(client: AsyncOpenAI, thread_id: str, run_id: str, status: str) -> Any:
    async with asyncio.timeout(WAIT):
        while (
            run := await client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        ).status != status:
            await asyncio.sleep(0.02)
    return run


@pytest.mark.asyncio
async def test_action_past_its_deadline_is_cancelled_and_never_submitted(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    # The simulator expires a waiting run 3 s after its creation; runcast keeps 0.5 s free.
    tg = await start_tools(gate.registry(), sim={"expires_in": 3.0}, expiry_margin=0.5, timeout=60)
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}"
    )
    creator = SdkRun(sdk, assistant_id, thread_id, "tool_call")
    handler = await creator.finished()
    sub = await subscription_ended(response, subscriber)
    run = await sdk.beta.threads.runs.retrieve(handler.run_id or "", thread_id=thread_id)
    await sdk.close()

    assert gate.started.is_set() and not gate.opened.is_set()
    assert tg.sim.requests == []  # never submitted, not even late
    assert run.status == "cancelled"
    assert handler.seen[-1][0] == "thread.run.cancelled"
    assert sub.names[-5:] == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
        "runcast.tool_automation.cancelled",
        "thread.run.cancelled",
        "done",
    ]
    reason = sub.events[-3].json()["reason"]
    assert reason == "tool calls did not finish before the action's deadline"
    assert sub.events[-4].json()["error"] == f"cancelled: {reason}"


class LateOutputs:
    """An action handler whose outputs are ready only after the action's ``expires_at``."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def handles(self, action: HeldAction) -> bool:
        return bool(action.calls)

    async def run_action(self, action: HeldAction, emit: Emit | None = None) -> Submit:
        assert action.calls
        calls = action.calls
        return Submit(
            tool_outputs=tuple(ToolOutput(tool_call_id=c.id, output="late") for c in calls),
            not_after=time.time() - 1,
        )

    async def forget(self, run_id: str) -> None:
        self.forgotten.append(run_id)


@pytest.mark.asyncio
async def test_outputs_ready_after_expiry_are_not_submitted(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    late = LateOutputs()
    tg = await start_tools(action_handler=late)
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    handler = await SdkRun(sdk, assistant_id, thread_id, "tool_call").finished()
    await sdk.close()
    async with session.get(
        f"{tg.gateway.url}/streams/threads/{thread_id}", params={"since": "0"}
    ) as response:
        sub = await read_sse(response, Subscriber())

    assert tg.sim.requests == []
    assert handler.seen[-1][0] == "thread.run.cancelled"
    assert sub.names[-3:] == ["runcast.tool_automation.cancelled", "thread.run.cancelled", "done"]
    assert (
        sub.events[-3].json()["reason"] == "tool outputs were ready only after the action expired"
    )
    assert late.forgotten == [handler.run_id]


@pytest.mark.asyncio
async def test_client_submitting_through_runcast_supersedes_the_handlers(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    tg = await start_tools(gate.registry())
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}", stop_at_done=2
    )
    creator = SdkRun(sdk, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    # Another client answers the action itself, through runcast, while the handler runs.
    run = await wait_for_status(sdk, thread_id, run_id, "requires_action")
    assert run.required_action is not None
    client = await submit_stream(sdk, run, lambda call: "the client's answer")
    first = await creator.finished()
    await sdk.close()
    sub = await subscription_ended(response, subscriber)

    # runcast stopped its handler and never submitted: the one submission is the client's.
    assert gate.cancelled == 1
    assert tg.sim.requests == [run_id]
    # The creator's stream ends like an unanswered action; the client's goes on to the end.
    assert first.seen[-1][0] == "thread.run.requires_action"
    assert client.seen[-1][0] == "thread.run.completed"
    assert quoted("get_weather", "the client's answer") in final_text(client)
    # Subscribers: runcast says why it stepped back, then the segment ends, then the client's
    # continuation follows on the same channel with no gap.
    # The call runcast had started is closed (it was left with its started event alone).
    names = sub.names
    first_done = names.index("done")
    assert names[first_done - 4 : first_done + 2] == [
        "thread.run.requires_action",
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
        "runcast.tool_automation.superseded",
        "done",
        "thread.run.step.completed",
    ]
    failed = sub.events[first_done - 2].json()
    assert failed["tool_call_id"] == sub.events[first_done - 3].json()["tool_call_id"]
    assert failed["error"] == "cancelled: runcast stopped answering the action"
    assert sub.events[first_done - 1].json()["reason"] == (
        "a client submitted the tool outputs itself"
    )
    assert names[-2:] == ["thread.run.completed", "done"]
    assert sub.seqs == list(range(1, len(names) + 1))


@pytest.mark.asyncio
async def test_submission_refused_upstream_is_reported_and_the_run_end_published(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    gate = Gate("runcast's answer")
    tg = await start_tools(gate.registry())
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}"
    )
    creator = SdkRun(sdk, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    # A client answers directly at the upstream, behind runcast's back.
    direct = AsyncOpenAI(base_url=tg.gateway.upstream_url, api_key="sk-direct", max_retries=0)
    run = await wait_for_status(direct, thread_id, run_id, "requires_action")
    assert run.required_action is not None
    await direct.beta.threads.runs.submit_tool_outputs(
        thread_id=thread_id,
        run_id=run_id,
        tool_outputs=[
            {"tool_call_id": call.id, "output": "direct"}
            for call in run.required_action.submit_tool_outputs.tool_calls
        ],
    )
    await wait_for_status(direct, thread_id, run_id, "completed")
    await direct.close()
    gate.opened.set()
    handler = await creator.finished()
    await sdk.close()
    sub = await subscription_ended(response, subscriber)

    assert tg.sim.requests == [run_id, run_id]  # the client's, then runcast's (refused)
    assert len(tg.sim.accepted) == 1
    assert sub.names[-6:] == [
        "thread.run.requires_action",
        "runcast.tool_call.started",
        "runcast.tool_call.completed",
        "runcast.tool_automation.rejected",
        "thread.run.completed",
        "done",
    ]
    rejected = sub.events[-3].json()
    assert rejected["status"] == 400
    assert "do not accept tool outputs" in rejected["reason"]
    assert handler.seen[-1][0] == "thread.run.completed"
    # The run is over (its terminal status was learnt), so its channel ends.
    async with asyncio.timeout(WAIT):
        while not (stats := tg.gateway.broker.channel_statistics(f"run:{run_id}")) or not (
            stats.ended
        ):
            await asyncio.sleep(0.02)


class Reconnecting:
    """A subscriber that hangs up after each event named in ``drop_at`` and resumes from there
    (SSE: ``Last-Event-ID``; WebSocket: ``?since=``)."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, drop_at: list[str], *, ws: bool = False
    ) -> None:
        self.session = session
        self.url = url
        self.drop_at = list(drop_at)
        self.ws = ws
        self.events: list[Received] = []
        self.connections = 0
        self.connected = asyncio.Event()

    def _take(self, event: Received) -> bool:
        """Record ``event``; True when the connection should end here."""
        self.events.append(event)
        if event.event == "done":
            return True
        if self.drop_at and event.event == self.drop_at[0]:
            self.drop_at.pop(0)
            return True
        return False

    def _since(self) -> str | None:
        ids = [e.id for e in self.events if e.id is not None]
        return ids[-1] if ids else None

    async def run(self) -> list[Received]:
        while not self.events or self.events[-1].event != "done":
            if self.ws:
                await self._ws_connection()
            else:
                await self._sse_connection()
        return self.events

    async def _sse_connection(self) -> None:
        since = self._since()
        headers = {"Last-Event-ID": since} if since else {}
        async with self.session.get(self.url, headers=headers) as response:
            assert response.status == 200
            self.connections += 1
            self.connected.set()
            decoder = SSEDecoder()
            async for chunk in response.content.iter_any():
                for sse in decoder.feed(chunk):
                    if self._take(Received.from_sse(sse)):
                        return

    async def _ws_connection(self) -> None:
        since = self._since()
        async with self.session.ws_connect(
            self.url, params={"since": since} if since else None
        ) as ws:
            self.connections += 1
            self.connected.set()
            async for message in ws:
                assert message.type == aiohttp.WSMsgType.TEXT
                if self._take(Received.from_ws(message.data)):
                    return


async def slow_weather(city: str) -> str:
    await asyncio.sleep(0.2)
    return f"{city}: drizzle"


async def slow_customer(customer_id: str) -> str:
    await asyncio.sleep(0.2)
    return f"{customer_id}: silver"


@pytest.mark.asyncio
async def test_one_submission_per_action_with_subscribers_reconnecting_mid_run(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    registry = ToolRegistry()
    registry.register(slow_weather, name="get_weather")
    registry.register(slow_customer, name="lookup_customer")
    tg = await start_tools(registry, sim={"deltas": 20, "delay_ms": 2})
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER, CUSTOMER])
    url = f"{tg.gateway.url}/streams/threads/{thread_id}"
    response, steady_task = await sse_subscribe(session, url)
    # Hang-ups while the handlers run, and right at an action.
    flaky = [
        Reconnecting(
            session,
            url,
            [
                "runcast.tool_call.started",
                "thread.run.requires_action",
                "runcast.tool_call.started",
            ],
        ),
        Reconnecting(
            session, url, ["runcast.tool_call.started", "runcast.tool_call.completed"], ws=True
        ),
    ]
    tasks = [asyncio.create_task(sub.run()) for sub in flaky]
    async with asyncio.timeout(WAIT):
        for sub in flaky:
            await sub.connected.wait()
    handler = await SdkRun(sdk, assistant_id, thread_id, "multi_round").finished()
    await sdk.close()
    async with asyncio.timeout(WAIT):
        steady = await steady_task
        resumed = [await task for task in tasks]
    response.close()

    assert handler.seen[-1][0] == "thread.run.completed"
    assert tg.sim.requests == [handler.run_id] * 2
    assert len(tg.sim.accepted) == 2
    assert steady.names.count("runcast.tool_call.started") == 2
    expected = numbered(steady.events)
    for sub, events in zip(flaky, resumed, strict=True):
        assert sub.connections == 4 if not sub.ws else sub.connections == 3
        assert numbered(events) == expected


@pytest.mark.asyncio
async def test_creator_leaving_mid_run_does_not_stop_automation(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    tg = await start_tools(gate.registry())
    setup = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(setup, tools=[WEATHER])
    await setup.close()
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}"
    )
    client = sdk_client(tg.gateway)
    creator = SdkRun(client, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    creator.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await creator.task
    await client.close()
    # Only the subscriber's connection is left: runcast has seen the creator go.
    async with asyncio.timeout(WAIT):
        while len(tg.gateway.runner.server.connections) > 1:  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    gate.opened.set()
    sub = await subscription_ended(response, subscriber)

    assert "thread.run.completed" not in [name for name, _ in creator.handler.seen]
    assert tg.sim.requests == [run_id]
    assert sub.names[-2:] == ["thread.run.completed", "done"]
    message = next(e.json() for e in reversed(sub.events) if e.event == "thread.message.completed")
    text = "".join(part["text"]["value"] for part in message["content"])
    assert quoted("get_weather", "gated answer") in text


@pytest.mark.asyncio
async def test_a_refused_client_submission_leaves_the_run_channel_to_runcast(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    tg = await start_tools(gate.registry())
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    creator = SdkRun(sdk, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/runs/{run_id}?since=0"
    )
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    # A client's submission through runcast that the upstream refuses (unknown call id).
    async with session.post(
        f"{tg.gateway.v1}/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        json={"tool_outputs": [{"tool_call_id": "call_bogus", "output": "x"}], "stream": True},
        headers={"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"},
    ) as refused:
        assert refused.status == 400
    gate.opened.set()
    handler = await creator.finished()
    await sdk.close()
    sub = await subscription_ended(response, subscriber)

    assert handler.seen[-1][0] == "thread.run.completed"
    assert tg.sim.requests == [run_id, run_id] and len(tg.sim.accepted) == 1
    # The run channel carried the whole run: it was not closed when the client's call failed.
    assert sub.names[-2:] == ["thread.run.completed", "done"]
    assert "runcast.tool_call.completed" in sub.names


@pytest.mark.asyncio
async def test_partial_action_is_left_to_the_client_whose_submission_continues_the_channel(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    registry = ToolRegistry()
    registry.register(slow_weather, name="get_weather")
    tg = await start_tools(registry)  # policy "all": lookup_customer has no handler
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER, CUSTOMER])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}", stop_at_done=2
    )
    first = await SdkRun(sdk, assistant_id, thread_id, "parallel_tool_calls").finished()
    # The creator sees the action it has to answer, and answers it through runcast.
    assert first.seen[-1][0] == "thread.run.requires_action"
    assert tg.sim.requests == []
    run = await sdk.beta.threads.runs.retrieve(first.run_id or "", thread_id=thread_id)
    assert run.required_action is not None
    second = await submit_stream(sdk, run, lambda call: f"by hand: {call.function.name}")
    await sdk.close()
    sub = await subscription_ended(response, subscriber)

    assert second.seen[-1][0] == "thread.run.completed"
    assert quoted("lookup_customer", "by hand: lookup_customer") in final_text(second)
    assert tg.sim.requests == [run.id]
    names = sub.names
    assert not any(name.startswith("runcast.") for name in names)  # runcast did not act
    assert names.count("done") == 2 and names[-2:] == ["thread.run.completed", "done"]
    assert sub.seqs == list(range(1, len(names) + 1))


@pytest.mark.asyncio
async def test_policy_error_answers_calls_without_a_handler_with_an_error_output(
    start_tools: StartTools,
) -> None:
    registry = ToolRegistry()
    registry.register(slow_weather, name="get_weather")
    tg = await start_tools(registry, policy="error")
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER, CUSTOMER])
    handler = await SdkRun(sdk, assistant_id, thread_id, "parallel_tool_calls").finished()
    await sdk.close()

    assert handler.seen[-1][0] == "thread.run.completed"
    [(_, outputs)] = tg.sim.accepted
    text = final_text(handler)
    assert quoted("lookup_customer", '{"error":"no handler for tool \'lookup_customer\'"}') in text
    weather = [o for o in outputs.values() if not o.startswith('{"error"')]
    assert len(weather) == 1 and weather[0].endswith(": drizzle")


@pytest.mark.asyncio
async def test_client_submission_winning_the_race_is_the_only_one_accepted(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    held = asyncio.Event()
    release = asyncio.Event()

    @web.middleware
    async def hold_runcasts_submission(request: web.Request, handler: Any) -> web.StreamResponse:
        # runcast's outputs reach the upstream only after the client's were accepted.
        if request.path.endswith("/submit_tool_outputs") and b"runcast's answer" in (
            await request.read()
        ):
            held.set()
            await release.wait()
        return await handler(request)

    gate = Gate("runcast's answer")
    tg = await start_tools(gate.registry(), sim_middleware=hold_runcasts_submission)
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}", stop_at_done=2
    )
    creator = SdkRun(sdk, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    run = await wait_for_status(sdk, thread_id, run_id, "requires_action")
    assert run.required_action is not None
    gate.opened.set()
    async with asyncio.timeout(WAIT):
        await held.wait()  # runcast's submission is on its way

    submitting = asyncio.create_task(submit_stream(sdk, run, lambda call: "the client's answer"))
    async with asyncio.timeout(WAIT):
        while not tg.sim.accepted:
            await asyncio.sleep(0.01)
    release.set()
    async with asyncio.timeout(WAIT):
        client = await submitting
        sub = await subscriber
    first = await creator.finished()
    await sdk.close()
    response.close()

    assert tg.sim.requests == [run_id, run_id]
    assert [outputs for _, outputs in tg.sim.accepted] == [
        {
            call.id: "the client's answer"
            for call in run.required_action.submit_tool_outputs.tool_calls
        }
    ]
    assert first.seen[-1][0] == "thread.run.requires_action"
    assert client.seen[-1][0] == "thread.run.completed"
    names = sub.names
    first_done = names.index("done")
    assert names[first_done - 2 : first_done + 2] == [
        "runcast.tool_call.completed",
        "runcast.tool_automation.superseded",
        "done",
        "thread.run.step.completed",
    ]
    assert names[-2:] == ["thread.run.completed", "done"]
    assert sub.seqs == list(range(1, len(names) + 1))
