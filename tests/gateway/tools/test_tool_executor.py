"""Running one action's calls: concurrency, timeouts, failures, policy, deadline (executor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from typing import Any

import orjson
import pytest
from tool_scenarios import AutomationFactory, Recorder, make_run

from gateway.tools import Cancel, Skip, Submit, ToolRegistry
from gateway.tools.executor import ToolExecutor
from gateway.tools.handlers import ToolCall


def outputs(outcome: object) -> dict[str, Any]:
    assert isinstance(outcome, Submit), outcome
    return {o.tool_call_id: o.output for o in outcome.tool_outputs}


@pytest.mark.asyncio
async def test_async_calls_of_one_action_run_concurrently(
    automation_for: AutomationFactory,
) -> None:
    # Each handler waits for all three to arrive: run one after another, none would return.
    barrier = asyncio.Barrier(3)
    registry = ToolRegistry()

    async def meet(n: int) -> int:
        await barrier.wait()
        return n * 10

    registry.register(meet)
    run = make_run(*[(f"call_{n}", "meet", orjson.dumps({"n": n}).decode()) for n in range(3)])
    async with automation_for(registry, timeout=5) as automation:
        outcome = await automation.run_action(run)
    assert outputs(outcome) == {"call_0": "0", "call_1": "10", "call_2": "20"}
    # Outputs keep the order of the calls (spec §1.3: one request with all of them).
    assert isinstance(outcome, Submit)
    assert [o.tool_call_id for o in outcome.tool_outputs] == ["call_0", "call_1", "call_2"]


@pytest.mark.asyncio
async def test_sync_calls_of_one_action_run_in_parallel_threads(
    automation_for: AutomationFactory,
) -> None:
    barrier = threading.Barrier(3, timeout=5)
    registry = ToolRegistry()

    def meet(n: int) -> str:
        barrier.wait()  # BrokenBarrierError (an error output) unless all three run at once
        return threading.current_thread().name

    registry.register(meet)
    run = make_run(*[(f"call_{n}", "meet", f'{{"n": {n}}}') for n in range(3)])
    async with automation_for(registry, threads=3) as automation:
        result = outputs(await automation.run_action(run))
    assert len(set(result.values())) == 3
    assert all(name.startswith("runcast-tool") for name in result.values())


@pytest.mark.asyncio
async def test_global_concurrency_limit(automation_for: AutomationFactory) -> None:
    gate = asyncio.Event()
    two_running = asyncio.Event()
    active = 0
    most = 0
    registry = ToolRegistry()

    async def work(n: int) -> int:
        nonlocal active, most
        active += 1
        most = max(most, active)
        if active == 2:
            two_running.set()
        await gate.wait()
        active -= 1
        return n

    registry.register(work)
    run = make_run(*[(f"call_{n}", "work", f'{{"n": {n}}}') for n in range(4)])
    async with automation_for(registry, concurrency=2) as automation:
        task = asyncio.create_task(automation.run_action(run))
        try:
            await asyncio.wait_for(two_running.wait(), 5)
            for _ in range(20):
                await asyncio.sleep(0)
            assert active == 2
            stats = automation.statistics().executor
            assert (stats.calls_running, stats.calls_waiting) == (2, 2)
        finally:
            gate.set()
        outcome = await task
        stats = automation.statistics()
    assert most == 2
    assert outputs(outcome) == {f"call_{n}": str(n) for n in range(4)}
    assert stats.tracked_runs == 1
    assert (stats.executor.calls_running, stats.executor.calls_completed) == (0, 4)


@pytest.mark.asyncio
async def test_per_call_timeout_becomes_an_error_output(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    never = asyncio.Event()
    release_thread = threading.Event()
    registry = ToolRegistry()

    async def hang() -> str:
        await never.wait()
        return "unreachable"

    def hang_in_thread() -> str:
        release_thread.wait(5)
        return "late"

    def quick() -> str:
        return "fine"

    registry.register(hang)
    registry.register(hang_in_thread)
    registry.register(quick)
    run = make_run(("c1", "hang", "{}"), ("c2", "hang_in_thread", "{}"), ("c3", "quick", "{}"))
    try:
        async with automation_for(registry, timeout=0.05) as automation:
            result = outputs(await automation.run_action(run, recorder))
    finally:
        release_thread.set()
    assert orjson.loads(result["c1"]) == {"error": "tool 'hang' timed out after 0.05s"}
    assert orjson.loads(result["c2"]) == {"error": "tool 'hang_in_thread' timed out after 0.05s"}
    assert result["c3"] == "fine"
    assert [n for n, _ in recorder.for_call("c1")] == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
    ]


@pytest.mark.asyncio
async def test_stuck_sync_handlers_cannot_starve_the_others(
    automation_for: AutomationFactory,
) -> None:
    # Stuck threads (never returning, here until released) are let go at their timeout; up to
    # `threads` of them, sync calls still get a thread of their own, past it they are refused
    # at once, saying why, instead of waiting for a thread that never comes.
    release = threading.Event()
    ran: list[str] = []
    registry = ToolRegistry()

    def stuck() -> str:
        release.wait(10)
        return "late"

    def quick(n: int) -> str:
        ran.append(f"quick {n}")
        return "fine"

    async def quick_async() -> str:
        return "fine too"

    for fn in (stuck, quick, quick_async):
        registry.register(fn)
    try:
        async with automation_for(registry, timeout=0.3, threads=2) as automation:
            async with asyncio.timeout(5):
                stuck_1 = await automation.run_action(make_run(("s1", "stuck", "{}"), run_id="r1"))
                assert "timed out" in outputs(stuck_1)["s1"]
                both = make_run(
                    ("q1", "quick", '{"n": 1}'), ("q2", "quick", '{"n": 2}'), run_id="r2"
                )
                assert outputs(await automation.run_action(both)) == {"q1": "fine", "q2": "fine"}
                await automation.run_action(make_run(("s2", "stuck", "{}"), run_id="r3"))
                t0 = time.perf_counter()
                refused = outputs(
                    await automation.run_action(
                        make_run(
                            ("q3", "quick", '{"n": 3}'), ("a1", "quick_async", "{}"), run_id="r4"
                        )
                    )
                )
                assert time.perf_counter() - t0 < 0.2  # at once, not after a timeout
                assert orjson.loads(refused["q3"]) == {
                    "error": "not run: 2 sync tool handlers are stuck (still running after their "
                    "call timed out or was cancelled; tools.threads allows 2)"
                }
                assert refused["a1"] == "fine too"
                assert ran == ["quick 1", "quick 2"]
                assert automation.statistics().stuck_threads == 2
                release.set()
                while automation.statistics().stuck_threads:
                    await asyncio.sleep(0.005)
                again = make_run(("q4", "quick", '{"n": 4}'), run_id="r5")
                assert outputs(await automation.run_action(again)) == {"q4": "fine"}
    finally:
        release.set()


@pytest.mark.asyncio
async def test_a_handler_that_swallows_its_cancellation_still_times_out(
    automation_for: AutomationFactory,
) -> None:
    registry = ToolRegistry()
    released = asyncio.Event()
    ended = asyncio.Event()

    async def stubborn() -> str:
        while not released.is_set():
            # A handler bug: the call must be answered anyway.
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()
        ended.set()
        return "late"

    registry.register(stubborn)
    async with automation_for(registry, timeout=0.05) as automation:
        async with asyncio.timeout(5):
            result = outputs(await automation.run_action(make_run(("c1", "stubborn", "{}"))))
        assert orjson.loads(result["c1"]) == {"error": "tool 'stubborn' timed out after 0.05s"}
        released.set()
        async with asyncio.timeout(5):
            await ended.wait()  # let go, still held until it ended


@pytest.mark.asyncio
async def test_raising_handler_becomes_an_error_output(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    registry = ToolRegistry()

    def explode(city: str) -> str:
        raise ValueError(f"no station in {city}")

    async def explode_async() -> str:
        raise RuntimeError

    registry.register(explode)
    registry.register(explode_async)
    run = make_run(("c1", "explode", '{"city": "Oslo"}'), ("c2", "explode_async", ""))
    async with automation_for(registry) as automation:
        result = outputs(await automation.run_action(run, recorder))
    assert orjson.loads(result["c1"]) == {"error": "ValueError: no station in Oslo"}
    assert orjson.loads(result["c2"]) == {"error": "RuntimeError"}
    failed = dict(recorder.for_call("c1"))["runcast.tool_call.failed"]
    assert failed["error"] == "ValueError: no station in Oslo"


class _Odd(BaseException):
    pass


def test_a_handler_raising_systemexit_or_keyboardinterrupt_is_an_error_output(
    automation_for: AutomationFactory,
) -> None:
    # On a loop of its own: asyncio re-raises SystemExit and KeyboardInterrupt from a task out of
    # the loop (the gateway's exit), and a KeyboardInterrupt reaching pytest ends its session.
    registry = ToolRegistry()

    def exits() -> str:
        sys.exit(2)  # what argparse does on bad arguments

    async def exits_async() -> str:
        raise SystemExit("bye")

    def interrupted() -> str:
        raise KeyboardInterrupt

    async def interrupted_async() -> str:
        raise KeyboardInterrupt

    async def odd() -> str:
        raise _Odd("not an Exception")

    for fn in (exits, exits_async, interrupted, interrupted_async, odd):
        registry.register(fn)
    names = ["exits", "exits_async", "interrupted", "interrupted_async", "odd"]
    run = make_run(*[(f"c_{name}", name, "{}") for name in names])
    recorder = Recorder()

    async def scenario() -> object:
        async with automation_for(registry) as automation, asyncio.timeout(5):
            return await automation.run_action(run, recorder)

    try:
        outcome = asyncio.run(scenario())
    except (SystemExit, KeyboardInterrupt) as exc:
        pytest.fail(f"{exc!r} raised by a handler escaped the event loop")
    assert {k: orjson.loads(v) for k, v in outputs(outcome).items()} == {
        "c_exits": {"error": "SystemExit: 2"},
        "c_exits_async": {"error": "SystemExit: bye"},
        "c_interrupted": {"error": "KeyboardInterrupt"},
        "c_interrupted_async": {"error": "KeyboardInterrupt"},
        "c_odd": {"error": "_Odd: not an Exception"},
    }
    assert dict(recorder.for_call("c_exits"))["runcast.tool_call.failed"]["error"] == (
        "SystemExit: 2"
    )


@pytest.mark.asyncio
async def test_a_handler_raising_cancellederror_is_an_error_output(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    registry = ToolRegistry()

    async def gives_up() -> str:
        raise asyncio.CancelledError  # not runcast's: nobody cancelled the call

    def gives_up_in_thread() -> str:
        raise asyncio.CancelledError

    registry.register(gives_up)
    registry.register(gives_up_in_thread)
    run = make_run(("c1", "gives_up", "{}"), ("c2", "gives_up_in_thread", "{}"))
    async with automation_for(registry) as automation, asyncio.timeout(5):
        result = outputs(await automation.run_action(run, recorder))
    assert orjson.loads(result["c1"]) == {"error": "CancelledError"}
    assert orjson.loads(result["c2"]) == {"error": "CancelledError"}
    assert [n for n, _ in recorder.for_call("c1")] == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
    ]


@pytest.mark.asyncio
async def test_a_handler_cancelling_its_own_task_is_an_error_output(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    # Its task then counts as being cancelled (Task.cancelling()), which was read as runcast's
    # cancel: the CancelledError escaped, the call had no output and the executor's assert
    # failed (the relay failed, an Assistants action went to the client).
    registry = ToolRegistry()

    async def quits() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)
        return "unreachable"

    async def fine() -> str:
        return "ok"

    registry.register(quits)
    registry.register(fine)
    run = make_run(("c1", "quits", "{}"), ("c2", "fine", "{}"))
    async with automation_for(registry) as automation, asyncio.timeout(5):
        result = outputs(await automation.run_action(run, recorder))
    assert orjson.loads(result["c1"]) == {"error": "CancelledError"}
    assert result["c2"] == "ok"
    assert [n for n, _ in recorder.for_call("c1")] == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
    ]


@pytest.mark.asyncio
async def test_cancelling_the_action_still_cancels_it(automation_for: AutomationFactory) -> None:
    handler_cancelled = asyncio.Event()
    running = asyncio.Event()
    registry = ToolRegistry()

    async def hang() -> str:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return "unreachable"

    registry.register(hang)
    async with automation_for(registry) as automation, asyncio.timeout(5):
        task = asyncio.create_task(automation.run_action(make_run(("c1", "hang", "{}"))))
        await running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await handler_cancelled.wait()
    assert task.cancelled()


@pytest.mark.asyncio
async def test_calls_cut_by_cancelling_the_action_get_their_closing_event(
    recorder: Recorder,
) -> None:
    # A client's own submission supersedes runcast's answer by cancelling it: the started
    # call was left without a completed or failed event, and uncounted.
    running = asyncio.Event()

    async def hang(call: ToolCall) -> str:
        running.set()
        await asyncio.Event().wait()
        return "unreachable"

    async def quick(call: ToolCall) -> str:
        return "done"

    outcomes: list[str] = []
    executor = ToolExecutor(
        lambda name: hang if name == "hang" else quick,
        timeout=5,
        concurrency=4,
        on_call=lambda outcome, seconds: outcomes.append(outcome),
    )
    run = make_run(("c1", "hang", "{}"), ("c2", "quick", "{}"))
    async with asyncio.timeout(5):
        task = asyncio.create_task(
            executor.run(run.calls, run_id="run_1", thread_id="thread_1", emit=recorder)
        )
        await running.wait()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [n for n, _ in recorder.for_call("c1")] == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
    ]
    failed = dict(recorder.for_call("c1"))["runcast.tool_call.failed"]
    assert failed["error"] == "cancelled: runcast stopped answering the action"
    assert [n for n, _ in recorder.for_call("c2")][-1] == "runcast.tool_call.completed"
    assert sorted(outcomes) == ["cancelled", "completed"]
    assert executor.statistics().calls_running == 0


@pytest.mark.asyncio
async def test_a_handler_error_is_redacted_before_it_leaves(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    # The output goes to the model upstream and the event to every subscriber: the same
    # redaction as the log's (gateway.logs.redact), not the handler's text verbatim.
    key = "sk-" + "A1b2" * 8
    registry = ToolRegistry()

    def leaky() -> str:
        raise PermissionError(f"upstream refused key {key} with Bearer abc.def")

    registry.register(leaky)
    async with automation_for(registry) as automation, asyncio.timeout(5):
        result = outputs(await automation.run_action(make_run(("c1", "leaky", "{}")), recorder))
    expected = "PermissionError: upstream refused key sk-*** with Bearer ***"
    assert orjson.loads(result["c1"]) == {"error": expected}
    assert dict(recorder.for_call("c1"))["runcast.tool_call.failed"]["error"] == expected


@pytest.mark.asyncio
async def test_bad_arguments_become_an_error_output_without_calling_the_handler(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    calls: list[dict[str, Any]] = []
    registry = ToolRegistry()

    def record(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "ok"

    registry.register(record, name="get_weather")
    run = make_run(
        ("c1", "get_weather", '{"city": "Osl'),
        ("c2", "get_weather", '["Oslo"]'),
        ("c3", "get_weather", '{"city": "Oslo"}'),
    )
    async with automation_for(registry) as automation:
        result = outputs(await automation.run_action(run, recorder))
    assert orjson.loads(result["c1"])["error"].startswith("arguments are not valid JSON")
    assert orjson.loads(result["c2"]) == {"error": "arguments must be a JSON object, got list"}
    assert result["c3"] == "ok"
    assert calls == [{"city": "Oslo"}]
    # A call that never reached its handler has no "started", only "failed".
    assert [(n, d["duration_ms"]) for n, d in recorder.for_call("c1")] == [
        ("runcast.tool_call.failed", 0.0)
    ]


@pytest.mark.asyncio
async def test_wrong_keyword_arguments_are_a_handler_error(
    automation_for: AutomationFactory,
) -> None:
    registry = ToolRegistry()

    def get_weather(city: str) -> str:
        return city

    registry.register(get_weather)
    run = make_run(("c1", "get_weather", '{"town": "Oslo"}'))
    async with automation_for(registry) as automation:
        result = outputs(await automation.run_action(run))
    assert orjson.loads(result["c1"])["error"].startswith("TypeError:")


@pytest.mark.asyncio
async def test_on_error_cancel_stops_the_other_calls(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    sibling_cancelled = asyncio.Event()
    registry = ToolRegistry()

    async def slow() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise
        return "unreachable"

    async def broken() -> str:
        await asyncio.sleep(0)
        raise KeyError("missing")

    registry.register(slow)
    registry.register(broken)
    run = make_run(("c1", "slow", "{}"), ("c2", "broken", "{}"))
    async with automation_for(registry, on_error="cancel") as automation:
        outcome = await automation.run_action(run, recorder)
    assert isinstance(outcome, Cancel)
    assert outcome.reason == "tool 'broken' (c2) failed: KeyError: 'missing'"
    assert sibling_cancelled.is_set()
    slow_events = recorder.for_call("c1")
    assert [n for n, _ in slow_events] == ["runcast.tool_call.started", "runcast.tool_call.failed"]
    assert slow_events[1][1]["error"].startswith("cancelled: tool 'broken'")
    assert recorder.events[-1] == (
        "runcast.tool_automation.cancelled",
        {"run_id": "run_1", "thread_id": "thread_1", "reason": outcome.reason},
    )


@pytest.mark.asyncio
async def test_on_error_cancel_applies_to_bad_arguments(automation_for: AutomationFactory) -> None:
    registry = ToolRegistry()
    registry.register(lambda city: city, name="get_weather")
    run = make_run(("c1", "get_weather", "{not json"))
    async with automation_for(registry, on_error="cancel") as automation:
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Cancel)
    assert "arguments are not valid JSON" in outcome.reason


@pytest.mark.asyncio
async def test_policy_all_leaves_a_partly_handled_action_to_the_client(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    called: list[str] = []
    registry = ToolRegistry()
    registry.register(lambda: called.append("x") or "ok", name="known")
    run = make_run(("c1", "known", "{}"), ("c2", "unknown_tool", "{}"))
    async with automation_for(registry, policy="all") as automation:
        assert not automation.handles(run)
        assert automation.handles(make_run(("c1", "known", "{}")))
        outcome = await automation.run_action(run, recorder)
    assert outcome == Skip(reason="no handler for 'unknown_tool' (policy 'all')")
    assert called == []
    assert recorder.events == []


@pytest.mark.asyncio
async def test_policy_error_answers_unhandled_calls_with_an_error(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    registry = ToolRegistry()
    registry.register(lambda: "ok", name="known")
    run = make_run(("c1", "known", "{}"), ("c2", "unknown_tool", "{}"))
    # on_error="cancel" is about failing handlers; a missing one is the policy's business.
    async with automation_for(registry, policy="error", on_error="cancel") as automation:
        assert automation.handles(run)
        result = outputs(await automation.run_action(run, recorder))
    assert result == {"c1": "ok", "c2": '{"error":"no handler for tool \'unknown_tool\'"}'}
    assert recorder.for_call("c2")[0][0] == "runcast.tool_call.failed"


@pytest.mark.asyncio
async def test_expired_action_is_cancelled_without_running_handlers(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    called: list[str] = []
    registry = ToolRegistry()
    registry.register(lambda: called.append("x") or "ok", name="known")
    # expires_at is 3 s away but the margin is 5 s: the outputs could not be submitted in time.
    run = make_run(("c1", "known", "{}"), expires_at=int(time.time()) + 3)
    async with automation_for(registry, expiry_margin=5) as automation:
        outcome = await automation.run_action(run, recorder)
    assert isinstance(outcome, Cancel)
    assert "deadline passed" in outcome.reason
    assert called == []
    assert recorder.names() == ["runcast.tool_automation.cancelled"]


@pytest.mark.asyncio
async def test_handlers_outliving_the_deadline_cancel_the_run(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    now = 1_730_000_000.0
    registry = ToolRegistry()

    async def hang() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    registry.register(hang)
    # A frozen clock puts the deadline (expires_at - margin) 0.1 s after the calls start; the
    # per-call timeout (30 s) would come much later.
    run = make_run(("c1", "hang", "{}"), expires_at=int(now) + 10)
    async with automation_for(
        registry, clock=lambda: now, expiry_margin=9.9, timeout=30
    ) as automation:
        outcome = await automation.run_action(run, recorder)
    assert outcome == Cancel(reason="tool calls did not finish before the action's deadline")
    assert recorder.names() == [
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
        "runcast.tool_automation.cancelled",
    ]


@pytest.mark.asyncio
async def test_visibility_events_carry_ids_and_durations(
    automation_for: AutomationFactory, recorder: Recorder
) -> None:
    registry = ToolRegistry()

    async def nap() -> str:
        await asyncio.sleep(0.03)
        return "rested"

    def fail() -> str:
        raise ValueError("nope")

    registry.register(nap)
    registry.register(fail)
    run = make_run(("c1", "nap", "{}"), ("c2", "fail", "{}"), run_id="run_9", thread_id="t_9")
    async with automation_for(registry) as automation:
        await automation.run_action(run, recorder)

    (n1, started), (n2, completed) = recorder.for_call("c1")
    assert (n1, n2) == ("runcast.tool_call.started", "runcast.tool_call.completed")
    assert started == {"run_id": "run_9", "thread_id": "t_9", "tool_call_id": "c1", "name": "nap"}
    assert completed["duration_ms"] >= 20  # it slept 30 ms
    assert "error" not in completed
    (_, _), (n3, failed) = recorder.for_call("c2")
    assert n3 == "runcast.tool_call.failed"
    assert failed["error"] == "ValueError: nope"
    assert failed["duration_ms"] >= 0


@pytest.mark.asyncio
async def test_a_failing_emit_never_fails_the_call(automation_for: AutomationFactory) -> None:
    def broken_emit(name: str, data: bytes) -> None:
        raise ConnectionResetError("subscriber hub is gone")

    registry = ToolRegistry()
    registry.register(lambda: "ok", name="known")
    async with automation_for(registry) as automation:
        outcome = await automation.run_action(make_run(("c1", "known", "{}")), broken_emit)
    assert outputs(outcome) == {"c1": "ok"}


@pytest.mark.asyncio
async def test_a_crowded_action_gives_the_next_slot_to_another_run(
    automation_for: AutomationFactory,
) -> None:
    # Run 1 asks for 6 calls at once with 2 slots; run 2's single call must not wait for its
    # backlog (first come, first served: 300 calls of 3 s held another run's call for 26 s).
    started: list[str] = []
    finish = {f"w{n}": asyncio.Event() for n in range(6)}
    registry = ToolRegistry()

    async def work(name: str) -> str:
        started.append(name)
        if name in finish:
            await finish[name].wait()
        return name

    registry.register(work)
    crowd = make_run(*[(f"c{n}", "work", f'{{"name": "w{n}"}}') for n in range(6)])
    other = make_run(("q", "work", '{"name": "quick"}'), run_id="run_2")
    async with automation_for(registry, concurrency=2) as automation:
        first = asyncio.create_task(automation.run_action(crowd))
        while len(started) < 2:
            await asyncio.sleep(0)
        second = asyncio.create_task(automation.run_action(other))
        async with asyncio.timeout(5):
            while automation.statistics().executor.calls_waiting < 5:  # 4 of run 1, run 2's
                await asyncio.sleep(0.001)
            finish["w0"].set()
            assert outputs(await second) == {"q": "quick"}
            assert started[:3] == ["w0", "w1", "quick"]
            for event in finish.values():
                event.set()
            assert len(outputs(await first)) == 6


@pytest.mark.asyncio
async def test_many_failing_calls_of_one_run_write_a_few_log_lines(
    automation_for: AutomationFactory, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # One request asking for 500 calls that all failed wrote a line per call (1,004 lines with
    # a webhook's per-attempt lines): now the 1st, 10th, 100th... of a run, counted.
    registry = ToolRegistry()

    async def broken() -> str:
        raise ValueError("no")

    registry.register(broken)
    run = make_run(*((f"c{i}", "broken", "{}") for i in range(120)))
    async with automation_for(registry) as automation, asyncio.timeout(10):
        result = outputs(await automation.run_action(run, recorder))
    assert len(result) == 120 and all("error" in orjson.loads(v) for v in result.values())
    lines = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert len(lines) == 3, lines
    assert "(the 100th such failure of this run's calls)" in lines[-1]


@pytest.mark.asyncio
async def test_each_distinct_failure_of_a_run_gets_its_line(
    automation_for: AutomationFactory, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The lines were counted per run: one tool's KeyError hid another tool's ValueError, and
    # its traceback, for good.
    registry = ToolRegistry()

    async def lookup() -> str:
        raise KeyError("city")

    async def parse() -> str:
        raise ValueError("bad date")

    registry.register(lookup)
    registry.register(parse)
    run = make_run(("c1", "lookup", "{}"), ("c2", "parse", "{}"), ("c3", "lookup", "{}"))
    async with automation_for(registry) as automation, asyncio.timeout(10):
        await automation.run_action(run, recorder)
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert sorted(r.exc_info[1].__class__.__name__ for r in raised if r.exc_info) == [
        "KeyError",
        "ValueError",
    ]
