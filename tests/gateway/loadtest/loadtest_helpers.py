"""What the load test's end-to-end tests share: the report's schema check, an embedded run read
back from its JSON report, and a simulator with a runcast gateway in front of it on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.http.app import create_app as create_gateway
from gateway.http.runner import start_runner
from gateway.hub import HubSettings
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run
from gateway.mock import MockSettings
from gateway.mock import create_app as create_mock
from gateway.settings import Settings
from gateway.tools import ToolRegistry
from gateway.upstream import UpstreamSettings

SCHEMA = json.loads(resources.files("gateway.loadtest").joinpath("report.schema.json").read_text())


def check_report(report: dict[str, Any]) -> None:
    """The report matches its schema and its percentiles are ordered."""
    jsonschema.validate(report, SCHEMA)
    for result in (report, report["compare"] or report):
        for row in result["latency_ms"].values():
            if row["count"]:
                assert 0 <= row["min"] <= row["p50"] <= row["p90"] <= row["p99"]
                assert row["p99"] <= row["p99_9"] <= row["max"]


def run_embedded(tmp_path: Path, status: int = 0, **fields: Any) -> dict[str, Any]:
    """``runcast loadtest --embedded`` with ``fields``, as the command runs it: its exit status is
    ``status``; returns its JSON report, schema-checked."""
    out = tmp_path / "report.json"
    settings = LoadSettings(embedded=True, json_path=str(out), progress_interval=0, **fields)
    assert run(settings) == status
    report: dict[str, Any] = json.loads(out.read_text())
    check_report(report)
    return report


@contextlib.asynccontextmanager
async def serving(
    simulator: MockSettings,
    *,
    hub: HubSettings | None = None,
    mock_middleware: Middleware | None = None,
    gateway_middleware: Middleware | None = None,
    shutdown_timeout: float = 2.0,
    tools: ToolRegistry | None = None,
) -> AsyncIterator[tuple[str, str, web.Application]]:
    """A simulator and a runcast gateway in front of it, each on its own port: (gateway URL,
    simulator URL, simulator app); a middleware may be added to either, and the gateway may
    answer tool calls itself (``tools``)."""
    mock_app = create_mock(simulator)
    if mock_middleware is not None:
        mock_app.middlewares.append(mock_middleware)
    mock_runner = web.AppRunner(mock_app)
    await mock_runner.setup()
    await web.TCPSite(mock_runner, "127.0.0.1", 0).start()
    mock_url = f"http://127.0.0.1:{mock_runner.addresses[0][1]}"
    gateway = create_gateway(
        Settings(
            port=0,
            upstream=UpstreamSettings(base_url=mock_url + "/v1"),
            subscribe_auth="open",
            shutdown_timeout=shutdown_timeout,
            hub=hub or HubSettings(),
        ),
        tools=tools,
    )
    if gateway_middleware is not None:
        gateway.middlewares.append(gateway_middleware)
    try:
        runner, url = await start_runner(gateway, "127.0.0.1", 0)
        try:
            yield url, mock_url, mock_app
        finally:
            await runner.cleanup()
    finally:
        await mock_runner.cleanup()
