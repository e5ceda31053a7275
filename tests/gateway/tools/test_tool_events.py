"""The runcast.tool_call.* event payloads (gateway/tools/events.py)."""

from __future__ import annotations

from gateway.tools import events

IDS = {"run_id": "run_1", "thread_id": "thread_1", "tool_call_id": "call_1", "name": "get_weather"}


def test_event_payloads_are_exact() -> None:
    assert events.tool_call_started(**IDS) == (
        "runcast.tool_call.started",
        b'{"run_id":"run_1","thread_id":"thread_1","tool_call_id":"call_1","name":"get_weather"}',
    )
    assert events.tool_call_completed(**IDS, duration_ms=12.34567) == (
        "runcast.tool_call.completed",
        b'{"run_id":"run_1","thread_id":"thread_1","tool_call_id":"call_1","name":"get_weather",'
        b'"duration_ms":12.346}',
    )
    assert events.tool_call_failed(**IDS, duration_ms=0.0, error="boom") == (
        "runcast.tool_call.failed",
        b'{"run_id":"run_1","thread_id":"thread_1","tool_call_id":"call_1","name":"get_weather",'
        b'"duration_ms":0.0,"error":"boom"}',
    )
    assert events.automation_cancelled(run_id="run_1", thread_id="t", reason="late") == (
        "runcast.tool_automation.cancelled",
        b'{"run_id":"run_1","thread_id":"t","reason":"late"}',
    )


def test_automation_payloads_are_exact() -> None:
    assert events.automation_superseded(run_id="run_1", thread_id="t", reason="client") == (
        "runcast.tool_automation.superseded",
        b'{"run_id":"run_1","thread_id":"t","reason":"client"}',
    )
    assert events.automation_rejected(run_id="run_1", thread_id="t", reason="no", status=400) == (
        "runcast.tool_automation.rejected",
        b'{"run_id":"run_1","thread_id":"t","reason":"no","status":400}',
    )


def test_creator_view_renames_error_only() -> None:
    _, failed = events.tool_call_failed(**IDS, duration_ms=1.0, error="boom")
    assert events.creator_view(failed) == (
        b'{"run_id":"run_1","thread_id":"thread_1","tool_call_id":"call_1","name":"get_weather",'
        b'"duration_ms":1.0,"error_message":"boom"}'
    )
    _, started = events.tool_call_started(**IDS)
    assert events.creator_view(started) is started
    # "error" inside a value is not a member: unchanged.
    _, cancelled = events.automation_cancelled(run_id="r", thread_id="t", reason='"error"')
    assert events.creator_view(cancelled) == cancelled
