"""Held actions (Assistants run payloads seen through their protocol), an event recorder and the webhook secret shared by the tool automation tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from gateway.runs.actions import HeldAction
from gateway.runs.assistants.protocol import ASSISTANTS
from parsers.assistants import Run

SECRET = "whsec_test_secret"


def make_run(
    *calls: tuple[str, str, str],
    run_id: str = "run_1",
    thread_id: str = "thread_1",
    expires_at: int | None = None,
) -> HeldAction:
    """A ``requires_action`` run whose action holds ``calls`` as (id, name, arguments JSON text),
    as the relay hands it to the tools (``RunProtocol.held_action``)."""
    payload: dict[str, Any] = {
        "id": run_id,
        "object": "thread.run",
        "thread_id": thread_id,
        "status": "requires_action",
        "expires_at": expires_at,
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                    for cid, name, args in calls
                ]
            },
        },
    }
    return ASSISTANTS.held_action(msgspec.json.decode(orjson.dumps(payload), type=Run))


class Recorder:
    """An ``emit`` callback keeping (event name, parsed data) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, data: bytes) -> None:
        self.events.append((name, orjson.loads(data)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def for_call(self, tool_call_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(n, d) for n, d in self.events if d.get("tool_call_id") == tool_call_id]


AutomationFactory = Callable[..., Any]
"""The ``automation_for`` fixture: ``async with automation_for(registry, **settings) as a``."""
