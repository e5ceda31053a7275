"""``runcast loadtest`` flags, the embedded target, and the event loop around the driver.

``--embedded`` starts a runcast gateway with its embedded simulator in this process, on free
127.0.0.1 ports, and aims at it: the figures then include the server's own work on the same
cores. Otherwise the load goes to ``--target`` only, which should be a server you run yourself.
Exit status: 0 when every run completed and every subscriber saw it whole, 1 otherwise, 2 for
invalid settings or an unreachable target. Ctrl+C stops the load, cancels the runs in flight
(counted as interrupted) and still prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.errors import ConfigError
from gateway.mock.settings import SCENARIO_NAMES, MockSettings
from gateway.settings import Settings

from .driver import execute
from .report import render_table, to_dict, write_json
from .settings import LoadSettings
from .stats import LoadStats

__all__ = ["add_arguments", "run", "run_async", "settings_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="URL", help="server root, e.g. http://127.0.0.1:8080")
    where.add_argument(
        "--embedded", action="store_true", help="start a gateway + simulator in-process and use it"
    )
    parser.add_argument("--api-key", metavar="KEY", help="bearer key for /v1 and POST /tokens")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--runs", type=int, metavar="N", help="runs to complete (default 100)")
    amount.add_argument("--duration", type=float, metavar="S", help="run for S seconds instead")
    parser.add_argument("--concurrency", type=int, default=10, metavar="C", help="virtual users")
    parser.add_argument(
        "--subscribers-per-run",
        type=int,
        default=2,
        metavar="M",
        help="thread-channel subscribers opened before each run (0 for a bare Assistants API)",
    )
    parser.add_argument(
        "--subscriber-transport",
        choices=("sse", "ws", "mixed"),
        default="sse",
        help="mixed alternates SSE and WebSocket",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        default="text",
        help="simulator scenario, sent as metadata.mock_scenario",
    )
    parser.add_argument("--rate", type=float, metavar="R", help="at most R run starts per second")
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write JSON here")
    parser.add_argument("--model", default="gpt-4o", help="model of the assistant created")
    parser.add_argument("--sim-deltas", type=int, default=16, metavar="N", help="(--embedded)")
    parser.add_argument(
        "--sim-delay-ms", type=float, default=0.0, metavar="MS", help="(--embedded)"
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument("--request-timeout", type=float, default=30.0, metavar="S")
    parser.add_argument(
        "--idle-timeout", type=float, default=30.0, metavar="S", help="longest stream silence"
    )
    parser.add_argument(
        "--run-timeout", type=float, default=120.0, metavar="S", help="one run, end to end"
    )


def settings_from_args(ns: argparse.Namespace) -> LoadSettings:
    """LoadSettings from parsed arguments; raises ``ConfigError`` on invalid values."""
    fields = (
        "target", "embedded", "api_key", "runs", "duration", "concurrency",
        "subscribers_per_run", "subscriber_transport", "scenario", "rate", "json_path",
        "model", "sim_deltas", "sim_delay_ms", "connect_timeout", "request_timeout",
        "idle_timeout", "run_timeout",
    )  # fmt: skip
    values: dict[str, Any] = {name: getattr(ns, name) for name in fields}
    return LoadSettings(**values)


@asynccontextmanager
async def _target(settings: LoadSettings) -> AsyncIterator[str]:
    if settings.target is not None:
        yield settings.target
        return
    from gateway.http.app import create_app
    from gateway.http.runner import start_runner

    app = create_app(
        Settings(
            port=0,
            shutdown_timeout=2.0,
            simulator=MockSettings(deltas=settings.sim_deltas, delay_ms=settings.sim_delay_ms),
        )
    )
    runner, url = await start_runner(app, "127.0.0.1", 0)
    try:
        yield url
    finally:
        await runner.cleanup()


async def run_async(
    settings: LoadSettings, *, stop: asyncio.Event | None = None
) -> tuple[dict[str, Any], LoadStats]:
    """The whole load test on the running loop: target up, load, report dict (JSON written)."""
    async with _target(settings) as url:
        stats = await execute(settings, url, stop=stop)
    report = to_dict(settings, url, stats)
    if settings.json_path is not None:
        write_json(settings.json_path, report)
    return report, stats


async def _main(settings: LoadSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        report, stats = await run_async(settings, stop=stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    print(render_table(report))
    clean = stats.runs_failed == 0 and not stats.errors and stats.delivery_mismatches == 0
    return 0 if clean and stats.runs_interrupted == 0 else 1


def run(settings: LoadSettings) -> int:
    """Run the load test in a new event loop (uvloop when installed); the exit status."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # Windows: plain asyncio
        factory = None
    # An embedded gateway logs each expected failure of a fault scenario; keep errors only.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main(settings))
    except ConfigError as exc:
        print(f"runcast loadtest: error: {exc}", file=sys.stderr)
        return 2
