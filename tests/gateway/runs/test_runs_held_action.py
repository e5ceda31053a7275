"""The Assistants protocol's view of a run held at an action (``RunProtocol.held_action``)."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.runs.assistants.protocol import ASSISTANTS
from parsers.assistants import Run


def _run(required_action: dict[str, Any] | None, **fields: Any) -> Run:
    payload = {
        "id": "run_1",
        "object": "thread.run",
        "thread_id": "thread_1",
        "status": "requires_action",
        **fields,
    }
    return msgspec.json.decode(
        msgspec.json.encode({**payload, "required_action": required_action}), type=Run
    )


def _tool_calls(*ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]
    return {"tool_calls": calls}


def test_a_tool_outputs_action_lists_its_calls_ids_and_deadline() -> None:
    run = _run(
        {"type": "submit_tool_outputs", "submit_tool_outputs": _tool_calls("c1", "c2")},
        expires_at=1700000000,
    )
    action = ASSISTANTS.held_action(run)
    assert (action.run_id, action.thread_id, action.expires_at) == ("run_1", "thread_1", 1700000000)
    assert action.call_ids == ("c1", "c2")
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in action.calls] == [
        ("c1", "function", "f", "{}"),
        ("c2", "function", "f", "{}"),
    ]


def test_an_action_of_another_type_keeps_its_ids_but_offers_no_calls() -> None:
    # The handler may not answer it, yet a submission mark or a taker still compares its ids.
    run = _run({"type": "something_new", "submit_tool_outputs": _tool_calls("c1")})
    action = ASSISTANTS.held_action(run)
    assert action.call_ids == ("c1",)
    assert action.calls == ()


def test_a_run_without_an_action_has_no_calls() -> None:
    action = ASSISTANTS.held_action(_run(None))
    assert action.call_ids == () and action.calls == () and action.expires_at is None
