"""Tool automation over real sockets: a simulator that records submissions, runcast in front.

``tool_gateways()`` yields ``start(registry, sim=..., **tool_settings)`` which starts a simulator
(its ``submit_tool_outputs`` wrapped to record every request that reaches it, and the accepted
ones; ``sim_middleware`` runs before its routes) and a runcast gateway built with ``create_app(settings, tools=registry)``, the embedding API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from http_helpers import SECRET, Gateway, RecordingHandler

from gateway.http.app import create_app
from gateway.http.runner import start_runner
from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.mock.routes import SERVICE_KEY
from gateway.runs.actions import ActionHandler
from gateway.settings import Settings
from gateway.tools import ToolRegistry, ToolSettings
from gateway.upstream import UpstreamSettings

SIM_DEFAULTS: dict[str, Any] = {"deltas": 8, "tokens_per_delta": 2, "seed": 3}


def function(name: str, **properties: str) -> dict[str, Any]:
    """A function tool whose parameters are the given string properties (all required)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {
                "type": "object",
                "properties": {prop: {"type": kind} for prop, kind in properties.items()},
                "required": list(properties),
            },
        },
    }


WEATHER = function("get_weather", city="string")
CUSTOMER = function("lookup_customer", customer_id="string")


@dataclass
class SimLog:
    """What reached the simulator's ``submit_tool_outputs``."""

    requests: list[str] = field(default_factory=list)
    """Run id of every submission request, accepted or refused."""
    accepted: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(run id, tool_call_id -> output) of every submission the simulator accepted."""


@dataclass
class ToolGateway:
    gateway: Gateway
    sim: SimLog


StartTools = Callable[..., Awaitable[ToolGateway]]


def _record_submissions(app: web.Application, log: SimLog) -> None:
    service = app[SERVICE_KEY]
    submit = service.submit_tool_outputs

    def recording(thread_id: str, run_id: str, req: Any, sink: Any) -> Any:
        log.requests.append(run_id)
        run = submit(thread_id, run_id, req, sink)  # raises the 400 when refused
        log.accepted.append((run_id, {o.tool_call_id: o.output for o in req.tool_outputs}))
        return run

    service.submit_tool_outputs = recording  # type: ignore[method-assign]


@asynccontextmanager
async def tool_gateways() -> AsyncIterator[StartTools]:
    runners: list[web.AppRunner] = []

    async def start(
        registry: ToolRegistry | None = None,
        *,
        sim: dict[str, Any] | None = None,
        action_handler: ActionHandler | None = None,
        sim_middleware: Any = None,
        **tool_settings: Any,
    ) -> ToolGateway:
        log = SimLog()
        sim_app = create_simulator(MockSettings(**{**SIM_DEFAULTS, **(sim or {})}))
        if sim_middleware is not None:
            sim_app.middlewares.append(sim_middleware)
        _record_submissions(sim_app, log)
        sim_runner = web.AppRunner(sim_app, shutdown_timeout=2.0, access_log=None)
        await sim_runner.setup()
        runners.append(sim_runner)
        await web.TCPSite(sim_runner, "127.0.0.1", 0).start()
        upstream_url = f"http://127.0.0.1:{sim_runner.addresses[0][1]}/v1"
        settings = Settings(
            port=0,
            subscribe_auth="open",
            token_secret=SECRET,
            recovery_timeout=5.0,
            shutdown_timeout=2.0,
            upstream=UpstreamSettings(base_url=upstream_url, max_retries=0, idle_timeout=10.0),
            tools=ToolSettings(**{"timeout": 5.0, **tool_settings}),
        )
        if action_handler is not None:
            app = create_app(settings, action_handler=action_handler)
        else:
            app = create_app(settings, tools=registry)
        runner, url = await start_runner(app, "127.0.0.1", 0)
        runners.append(runner)
        return ToolGateway(Gateway(url=url, app=app, runner=runner, upstream_url=upstream_url), log)

    try:
        yield start
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def final_text(handler: RecordingHandler) -> str:
    """The text of the last ``thread.message.completed`` the SDK handed to ``handler``."""
    for name, data in reversed(handler.seen):
        if name == "thread.message.completed":
            return "".join(part["text"]["value"] for part in data["content"])
    raise AssertionError("no completed message")


def quoted(name: str, output: str) -> str:
    """How the simulated model quotes a submitted output in its answer."""
    return f"{name} returned: {output}"


def requires_action_calls(events: list[tuple[str, bytes]]) -> list[list[dict[str, Any]]]:
    """The tool calls of each ``thread.run.requires_action`` among ``events``, in order."""
    actions = []
    for name, data in events:
        if name == "thread.run.requires_action":
            run = orjson.loads(data)
            actions.append(run["required_action"]["submit_tool_outputs"]["tool_calls"])
    return actions
