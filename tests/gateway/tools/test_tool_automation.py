"""The relay's seam: ToolAutomation rounds, duplicates, outcomes and lifecycle (automation.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from tool_scenarios import AutomationFactory, Recorder, make_run

from gateway.errors import ConfigError
from gateway.runs.protocols.toolchain import FunctionCall, FunctionSpec
from gateway.state import MemoryToolRounds, RoundState
from gateway.tools import Cancel, Skip, Submit, ToolAutomation, ToolRegistry, ToolSettings

HERE = Path(__file__).parent


def echo_registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(lambda text: text, name="echo")
    return registry


@pytest.mark.asyncio
async def test_submit_request_body_is_the_spec_body(automation_for: AutomationFactory) -> None:
    run = make_run(("call_C3", "echo", '{"text":"4 \\u00b0C"}'), expires_at=1_900_000_000)
    async with automation_for(echo_registry()) as automation:
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Submit)
    # Spec §1.3: {"tool_outputs":[{"tool_call_id":...,"output":...}],"stream":true}
    assert orjson.loads(outcome.request_body()) == {
        "tool_outputs": [{"tool_call_id": "call_C3", "output": "4 °C"}],
        "stream": True,
    }
    assert outcome.round == 1
    assert outcome.not_after == 1_900_000_000
    assert outcome.results[0].ok


@pytest.mark.asyncio
async def test_rounds_are_capped_per_run(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    rounds = MemoryToolRounds()
    async with automation_for(echo_registry(), max_rounds=2, rounds=rounds) as automation:
        first = await automation.run_action(make_run(("c1", "echo", '{"text":"a"}')), recorder)
        second = await automation.run_action(make_run(("c2", "echo", '{"text":"b"}')), recorder)
        other_run = await automation.run_action(
            make_run(("c1", "echo", '{"text":"x"}'), run_id="run_2"), recorder
        )
        third = await automation.run_action(make_run(("c3", "echo", '{"text":"c"}')), recorder)
        assert (await rounds.get("run_1")).rounds == 2
        await automation.forget("run_1")
        assert (await rounds.get("run_1")).rounds == 0
    assert isinstance(first, Submit) and first.round == 1
    assert isinstance(second, Submit) and second.round == 2
    assert isinstance(other_run, Submit) and other_run.round == 1
    assert third == Cancel(reason="tool round limit reached (2 submissions)")
    assert recorder.events[-1][0] == "runcast.tool_automation.cancelled"


@pytest.mark.asyncio
async def test_rounds_made_elsewhere_count(automation_for: AutomationFactory) -> None:
    # Another gateway process sharing the store already submitted twice for this run.
    rounds = MemoryToolRounds()
    assert await rounds.swap("run_1", RoundState(), RoundState(rounds=2, last_action=("c0",)))
    async with automation_for(echo_registry(), max_rounds=3, rounds=rounds) as automation:
        first = await automation.run_action(make_run(("c1", "echo", '{"text":"a"}')))
        assert isinstance(first, Submit) and first.round == 3
        second = await automation.run_action(make_run(("c2", "echo", '{"text":"b"}')))
        assert isinstance(second, Cancel)


@pytest.mark.asyncio
async def test_the_same_action_is_answered_once(automation_for: AutomationFactory) -> None:
    gate = asyncio.Event()
    calls = 0
    registry = ToolRegistry()

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "done"

    registry.register(slow)
    run = make_run(("c1", "slow", "{}"))
    async with automation_for(registry) as automation:
        first = asyncio.create_task(automation.run_action(run))
        while calls == 0:
            await asyncio.sleep(0)
        concurrent = await automation.run_action(run)
        gate.set()
        answered = await first
        again = await automation.run_action(run)
    assert concurrent == Skip(reason="these tool calls were answered already or are being answered")
    assert isinstance(answered, Submit)
    assert again == concurrent
    assert calls == 1


@pytest.mark.asyncio
async def test_an_interrupted_action_may_be_tried_again(automation_for: AutomationFactory) -> None:
    started = asyncio.Event()
    registry = ToolRegistry()

    async def wait_once() -> str:
        if not started.is_set():
            started.set()
            await asyncio.Event().wait()
        return "second time"

    registry.register(wait_once)
    run = make_run(("c1", "wait_once", "{}"))
    async with automation_for(registry) as automation:
        task = asyncio.create_task(automation.run_action(run))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Submit)
    assert outcome.tool_outputs[0].output == "second time"


@pytest.mark.asyncio
async def test_runs_without_a_tool_action_are_skipped(automation_for: AutomationFactory) -> None:
    async with automation_for(echo_registry(), policy="error") as automation:
        empty = make_run()
        assert not automation.handles(empty)
        assert isinstance(await automation.run_action(empty), Skip)


@pytest.mark.asyncio
async def test_settings_modules_are_loaded_next_to_a_given_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    given = echo_registry()
    settings = ToolSettings(modules=("runcast_sample_tools",))
    automation = ToolAutomation(settings, given)
    assert automation.registry.names() == ["echo", "get_weather", "lookup_customer"]
    assert given.names() == ["echo"]  # the caller's registry is not modified
    assert automation.enabled
    run = make_run(
        ("c1", "get_weather", '{"city":"Oslo"}'), ("c2", "lookup_customer", '{"customer_id":"7"}')
    )
    async with automation:
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Submit)
    assert outcome.as_dicts() == [
        {"tool_call_id": "c1", "output": '{"city":"Oslo","temp_c":4}'},
        {"tool_call_id": "c2", "output": "customer 7"},
    ]


@pytest.mark.asyncio
async def test_a_tool_with_python_and_webhook_handlers_is_rejected() -> None:
    settings = ToolSettings(webhooks={"echo": "http://127.0.0.1:1/x"}, webhook_secret="s" * 16)
    with pytest.raises(ConfigError, match="both a Python handler and a webhook: echo"):
        ToolAutomation(settings, echo_registry())
    # A handler added through ``registry`` after construction is caught at start.
    automation = ToolAutomation(settings)
    automation.registry.register(lambda text: text, name="echo")
    with pytest.raises(ConfigError, match="both a Python handler and a webhook: echo"):
        await automation.start()
    await automation.aclose()


@pytest.mark.asyncio
async def test_use_before_start_is_an_error() -> None:
    automation = ToolAutomation(ToolSettings(), echo_registry())
    assert not ToolAutomation(ToolSettings()).enabled
    with pytest.raises(RuntimeError, match="before start"):
        await automation.run_action(make_run(("c1", "echo", "{}")))


@pytest.mark.asyncio
async def test_a_later_stream_of_a_chain_may_repeat_call_ids(
    automation_for: AutomationFactory,
) -> None:
    # Servers that number calls per round (call_0 every round): the second round was skipped
    # as answered already. The same stream's calls are still answered once, and a model that
    # loops still meets max_rounds.
    calls = [FunctionCall(id="call_0", function=FunctionSpec("echo", '{"text":"a"}'))]
    async with automation_for(echo_registry(), max_rounds=2) as automation:
        first = await automation.answer_calls("c1", calls, owner={"completion_id": "c1"})
        again = await automation.answer_calls("c1", calls, owner={"completion_id": "c1"})
        second = await automation.answer_calls("c1", calls, owner={"completion_id": "c2"})
        third = await automation.answer_calls("c1", calls, owner={"completion_id": "c3"})
        # A run's action is the run's: the same call ids again are the same action.
        run = make_run(("call_0", "echo", '{"text":"a"}'))
        assert isinstance(await automation.run_action(run), Submit)
        assert isinstance(await automation.run_action(run), Skip)
    assert isinstance(first, Submit) and first.round == 1
    assert again == Skip(reason="these tool calls were answered already or are being answered")
    assert isinstance(second, Submit) and second.round == 2
    assert third == Cancel(reason="tool round limit reached (2 submissions)")


@pytest.mark.asyncio
async def test_answer_calls_of_a_stream_chain(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    def call(call_id: str, text: str) -> FunctionCall:
        return FunctionCall(id=call_id, function=FunctionSpec("echo", f'{{"text":"{text}"}}'))

    owner = {"response_id": "resp_2"}
    async with automation_for(echo_registry(), max_rounds=2) as automation:
        assert automation.covers([call("c1", "a")])
        assert not automation.covers([call("c1", "a"), FunctionCall("c2", FunctionSpec("x", ""))])
        first = await automation.answer_calls(
            "resp_1", [call("c1", "a")], owner=owner, emit=recorder
        )
        again = await automation.answer_calls(
            "resp_1", [call("c1", "a")], owner=owner, emit=recorder
        )
        second = await automation.answer_calls(
            "resp_1", [call("c2", "b")], owner=owner, emit=recorder
        )
        third = await automation.answer_calls(
            "resp_1", [call("c3", "c")], owner=owner, emit=recorder
        )
    assert isinstance(first, Submit) and first.tool_outputs[0].output == "a"
    assert again == Skip(reason="these tool calls were answered already or are being answered")
    assert isinstance(second, Submit) and second.round == 2
    assert third == Cancel(reason="tool round limit reached (2 submissions)")
    name, data = recorder.events[0]
    assert name == "runcast.tool_call.started"
    assert data == {"response_id": "resp_2", "tool_call_id": "c1", "name": "echo"}
    assert recorder.events[-1][1] == {
        "response_id": "resp_2",
        "reason": "tool round limit reached (2 submissions)",
    }


@pytest.mark.asyncio
async def test_python_outputs_are_held_to_max_output_bytes(
    automation_for: AutomationFactory,
) -> None:
    # The same bound as a webhook's body: a chat follow-up carries every earlier output again.
    run = make_run(
        ("fits", "echo", orjson.dumps({"text": "x" * 100}).decode()),
        ("ascii", "echo", orjson.dumps({"text": "x" * 101}).decode()),
        ("utf8", "echo", orjson.dumps({"text": "\u00e9" * 51}).decode()),  # 51 chars, 102 bytes
    )
    async with automation_for(echo_registry(), max_output_bytes=100) as automation:
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Submit)
    body = orjson.loads(outcome.request_body())
    outputs = {o["tool_call_id"]: o["output"] for o in body["tool_outputs"]}
    assert outputs["fits"] == "x" * 100
    for call in ("ascii", "utf8"):
        assert orjson.loads(outputs[call]) == {"error": "output over 100 bytes"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "ids", [("call_1", "call_1"), ("call_1", "")], ids=["one-id-twice", "an-empty-id"]
)
async def test_an_action_whose_calls_share_an_id_is_left_to_the_client(
    automation_for: AutomationFactory, ids: tuple[str, str]
) -> None:
    """Spec §1.3: one output per pending ``tool_call_id``; as for a Responses or Chat round."""
    ran: list[str] = []
    registry = ToolRegistry()
    registry.register(lambda text: ran.append(text) or text, name="echo")
    run = make_run(*((i, "echo", '{"text":"x"}') for i in ids))
    emit = Recorder()
    async with automation_for(registry) as automation:
        assert not automation.handles(run)
        outcome = await automation.run_action(run, emit)
    reason = "the upstream gave a call no id, or two calls one id"
    assert outcome == Skip(reason=reason)
    assert ran == []
    assert emit.events == [
        (
            "runcast.tool_automation.skipped",
            {
                "run_id": "run_1",
                "thread_id": "thread_1",
                "reason": reason,
                "calls": [{"tool_call_id": i, "name": "echo"} for i in ids],
            },
        )
    ]
