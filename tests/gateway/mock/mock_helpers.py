"""Helpers for the simulator's tests: a raw HTTP client, a strict SSE splitter, tool fixtures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from gateway.mock.service import MockService

HEADERS = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "precise": {"type": "boolean"}},
            "required": ["zone", "precise"],
        },
    },
}


@dataclass
class MockServer:
    base_url: str
    service: MockService
    runner: web.AppRunner


StartMock = Callable[..., Awaitable[MockServer]]


@dataclass(frozen=True)
class SSE:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(body: bytes) -> list[SSE]:
    """Split a body in the spec's exact framing (§2.1): ``event:`` LF ``data:`` LF LF per event.

    Fails on anything else, including an unterminated trailing event.
    """
    text = body.decode("utf-8")
    assert text.endswith("\n\n") or not text, f"unterminated stream tail: {text[-200:]!r}"
    events = []
    for block in text[:-2].split("\n\n") if text else []:
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append(SSE(lines[0][7:], lines[1][6:]))
    return events


def collapse(names: list[str]) -> list[str]:
    """Event names with runs of consecutive delta events folded into one."""
    out: list[str] = []
    for name in names:
        if name.endswith(".delta") and out and out[-1] == name:
            continue
        out.append(name)
    return out


class MockAPI:
    """A raw aiohttp client for the simulator at ``base_url``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        async with self.session.request(
            method, self.base_url + path, json=body, headers=headers or HEADERS
        ) as resp:
            raw = await resp.read()
            data = json.loads(raw) if raw else None
            return resp.status, data, resp.headers

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data, _ = await self.call(method, path, body)
        assert status == 200, data
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> list[SSE]:
        async with self.session.post(
            self.base_url + path, json={**body, "stream": True}, headers=HEADERS
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            return parse_sse(await resp.read())

    async def assistant(self, *tools: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"model": "gpt-4o", "instructions": "Answer briefly.", "tools": list(tools), **extra}
        data: dict[str, Any] = await self.ok("POST", "/assistants", body)
        return data

    async def thread(self, **body: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.ok("POST", "/threads", body)
        return data

    async def run_stream(
        self, thread_id: str, assistant_id: str, scenario: str | None = None, **extra: Any
    ) -> list[SSE]:
        body: dict[str, Any] = {"assistant_id": assistant_id, **extra}
        if scenario is not None:
            body["metadata"] = {"mock_scenario": scenario}
        return await self.stream(f"/threads/{thread_id}/runs", body)

    async def submit(self, thread_id: str, run_id: str, outputs: dict[str, str]) -> list[SSE]:
        body = {"tool_outputs": [{"tool_call_id": k, "output": v} for k, v in outputs.items()]}
        return await self.stream(f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", body)

    async def wait_status(
        self, thread_id: str, run_id: str, *statuses: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                run: dict[str, Any] = await self.ok("GET", f"/threads/{thread_id}/runs/{run_id}")
                if run["status"] in statuses:
                    return run
                await asyncio.sleep(0.02)


def last_run(events: list[SSE]) -> dict[str, Any]:
    runs = [
        e.json() for e in events if e.event.startswith("thread.run.") and ".step" not in e.event
    ]
    result: dict[str, Any] = runs[-1]
    return result


def message_text(events: list[SSE]) -> str:
    return "".join(
        e.json()["delta"]["content"][0]["text"]["value"]
        for e in events
        if e.event == "thread.message.delta"
    )
