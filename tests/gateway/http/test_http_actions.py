"""The requires_action seam: an action handler's outputs are submitted and the run continues."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from http_helpers import (
    RecordingHandler,
    StartGateway,
    canonical,
    new_thread,
    sdk_client,
    sse_subscribe,
    stream_run,
    subscription_ended,
)
from tool_helpers import WEATHER

from gateway.runs.actions import ActionOptions, HeldAction
from gateway.tools import Cancel, Skip, Submit, ToolOutput
from gateway.tools.events import Emit

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


class EchoTools:
    """Answers every call with a fixed output; ``skip`` leaves actions to the client."""

    def __init__(self, *, skip: bool = False, cancel: bool = False) -> None:
        self.skip = skip
        self.cancel = cancel
        self.actions: list[list[str]] = []
        self.forgotten: list[str] = []

    def handles(self, action: HeldAction) -> bool:
        return not self.skip and bool(action.calls)

    async def run_action(self, action: HeldAction, emit: Emit | None = None) -> Any:
        assert action.calls and emit is not None
        calls = action.calls
        self.actions.append([call.id for call in calls])
        if self.skip:
            return Skip(reason="not mine")
        if self.cancel:
            return Cancel(reason="tool failed")
        for call in calls:
            await emit(
                "runcast.tool_call.completed",
                orjson.dumps({"tool_call_id": call.id, "name": call.function.name}),
            )
        return Submit(
            tool_outputs=tuple(
                ToolOutput(tool_call_id=call.id, output=f"sunny-{call.id[-4:]}") for call in calls
            )
        )

    async def forget(self, run_id: str) -> None:
        self.forgotten.append(run_id)


@pytest.mark.asyncio
@pytest.mark.parametrize(("scenario", "rounds"), [("tool_call", 1), ("multi_round", 2)])
async def test_handler_outputs_are_submitted_and_the_run_continues(
    start_gateway: StartGateway, session: aiohttp.ClientSession, scenario: str, rounds: int
) -> None:
    tools = EchoTools()
    gateway = await start_gateway(action_handler=tools)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    handler = await stream_run(sdk, assistant_id, thread_id, scenario)
    await sdk.close()
    sub = await subscription_ended(response, subscriber)

    assert len(tools.actions) == rounds
    assert tools.forgotten == [handler.run_id]
    creator_names = [name for name, _ in handler.seen]
    assert creator_names[-1] == "thread.run.completed"
    assert "thread.run.requires_action" not in creator_names  # hidden by default
    answer = handler.seen[-3][1]  # the final thread.message.completed
    assert handler.seen[-3][0] == "thread.message.completed"
    assert f"sunny-{tools.actions[-1][0][-4:]}" in orjson.dumps(answer).decode()

    names = sub.names
    assert names.count("done") == 1 and names[-1] == "done"
    assert names.count("thread.run.requires_action") == rounds
    assert names.count("runcast.tool_call.completed") == rounds
    assert sub.seqs == list(range(1, len(names) + 1))
    # Subscribers see the creator's events plus the action and the tool events.
    visible = [(n, d) for n, d in sub.upstream if n not in ("thread.run.requires_action", "done")]
    assert canonical(visible) == handler.seen


@pytest.mark.asyncio
async def test_requires_action_can_be_shown_to_the_creator(
    start_gateway: StartGateway,
) -> None:
    tools = EchoTools()
    gateway = await start_gateway(
        action_handler=tools,
        action_options=ActionOptions(show_requires_action=True, events_to_creator=True),
    )
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    handler = await stream_run(sdk, assistant_id, thread_id, "tool_call")
    await sdk.close()
    names = [name for name, _ in handler.seen]
    assert names.count("thread.run.requires_action") == 1
    assert names[-1] == "thread.run.completed"
    assert [event["name"] for event in handler.untyped] == ["get_weather"]


@pytest.mark.asyncio
async def test_skipped_action_and_manual_submit_continue_the_run_channel(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    tools = EchoTools(skip=True)
    gateway = await start_gateway(action_handler=tools, sim={"deltas": 50, "delay_ms": 10})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    first = await stream_run(sdk, assistant_id, thread_id, "tool_call")
    assert first.seen[-1][0] == "thread.run.requires_action"
    run = first.current_run
    assert run is not None and run.required_action is not None
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/runs/{run.id}?since=0", stop_at_done=2
    )
    second = RecordingHandler()
    async with sdk.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread_id,
        run_id=run.id,
        tool_outputs=[
            {"tool_call_id": call.id, "output": "rainy"}
            for call in run.required_action.submit_tool_outputs.tool_calls
        ],
        event_handler=second,
    ) as stream:
        # The continuation streams to its submitter as it comes (the run is still going).
        assert gateway.relays.statistics().active == 1
        await stream.until_done()
    await sdk.close()
    sub = await subscription_ended(response, subscriber)
    assert second.seen[-1][0] == "thread.run.completed"
    names = sub.names
    assert names.count("done") == 2
    assert sub.seqs == list(range(1, len(names) + 1))
    first_done = names.index("done")
    assert canonical(sub.upstream[:first_done]) == first.seen
    assert canonical(sub.upstream[first_done + 1 : -1]) == second.seen
    assert tools.forgotten == [run.id]


@pytest.mark.asyncio
async def test_cancel_outcome_cancels_the_run_and_reports_its_end(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    tools = EchoTools(cancel=True)
    gateway = await start_gateway(action_handler=tools)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    handler = await stream_run(sdk, assistant_id, thread_id, "tool_call")
    run = await sdk.beta.threads.runs.retrieve(handler.run_id or "", thread_id=thread_id)
    await sdk.close()
    sub = await subscription_ended(response, subscriber)
    assert run.status == "cancelled"
    assert handler.seen[-1][0] == "thread.run.cancelled"
    assert sub.names[-3:] == ["thread.run.requires_action", "thread.run.cancelled", "done"]
    assert sub.names.count("done") == 1
    assert tools.forgotten == [handler.run_id]
