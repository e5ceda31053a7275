"""``runcast loadtest`` flags, the embedded target, the progress display and the exit status.

``--embedded`` starts a runcast gateway with its embedded simulator in this process, on free
127.0.0.1 ports, and aims at it: the figures then include the server's own work on the same
cores. Otherwise the load goes to ``--target`` (and ``--compare``) only, which should be servers
you run yourself. Exit status: 0 when the verdict passes (error rate within
``--max-error-rate``, no gap or duplicate in any subscriber's copy), 1 otherwise, 2 for invalid
settings or an unreachable target (one line on stderr), or for a ``--json`` or ``--plot`` file
that could not be written at the end (after the table: the figures are not lost with it). Ctrl+C
(or SIGTERM) stops the load, cuts the runs in flight and still prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.errors import ConfigError
from gateway.heap import tune_collector
from gateway.mock.settings import SCENARIO_NAMES, MockSettings
from gateway.settings import Settings

from .driver import PLACEHOLDER_KEY
from .loops import execute
from .plot import require_matplotlib, save_plot
from .progress import Progress
from .report import environment, render_table, to_dict, write_json
from .settings import PROTOCOL_NAMES, LoadSettings, server_root
from .stats import LoadStats
from .workers import merged, run_in_processes

__all__ = ["add_arguments", "run", "run_async", "settings_from_args", "write_files"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--target",
        metavar="URL",
        help="server root, e.g. http://127.0.0.1:8080 (a /v1 suffix is fine) "
        "(default: none; --target or --embedded is required)",
    )
    where.add_argument(
        "--embedded", action="store_true", help="start a gateway + simulator in-process and use it"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default="assistants",
        help="streamed calls to drive (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="bearer key for /v1 and POST /tokens "
        f"(default: none; the placeholder {PLACEHOLDER_KEY!r} is sent as the bearer)",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--runs", type=int, metavar="N", help="runs to start (default 100 without a time limit)"
    )
    amount.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="run for S seconds; runs in flight then are cut, not failed (default: none)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        metavar="C",
        help="virtual users; with --rate, the most runs in flight (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="open loop: R run arrivals per second, whatever the target's speed (default: none)",
    )
    parser.add_argument(
        "--arrival",
        choices=("constant", "poisson"),
        default="constant",
        help="gaps between --rate arrivals (default: %(default)s)",
    )
    parser.add_argument(
        "--ramp",
        metavar="LEVEL:S,...",
        help="stages moving the users (or --rate) linearly, e.g. 10:5,50:10,50:30 (default: none)",
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="highest error rate (0..1) that still exits 0 (default: %(default)s)",
    )
    parser.add_argument(
        "--compare",
        metavar="URL",
        help="also send the same load to this server and print the added latency (default: none)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="spread the virtual users over N generator processes (default: %(default)s)",
    )
    parser.add_argument(
        "--subscribers-per-run",
        type=int,
        default=2,
        metavar="M",
        help="channel subscribers per run, 0 for a bare API (default: %(default)s)",
    )
    parser.add_argument(
        "--subscriber-transport",
        choices=("sse", "ws", "mixed"),
        default="sse",
        help="mixed alternates SSE and WebSocket (default: %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        default="text",
        help="simulator scenario, sent as metadata.mock_scenario (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        help="also write the JSON report here (default: none, the table only)",
    )
    parser.add_argument(
        "--plot",
        dest="plot_path",
        metavar="PATH.png",
        help="latency CDFs, throughput and errors over time (needs runcast[plot]) "
        "(default: none, no plot)",
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines when not on a terminal, 0: none (default: %(default)s)",
    )
    parser.add_argument("--model", default="gpt-4o", help="model asked for (default: %(default)s)")
    parser.add_argument(
        "--sim-deltas",
        type=int,
        default=16,
        metavar="N",
        help="(--embedded) deltas per message (default: %(default)s)",
    )
    parser.add_argument(
        "--sim-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="(--embedded) pause between deltas (default: %(default)s)",
    )
    parser.add_argument(
        "--give-up-after",
        dest="give_up",
        type=float,
        default=10.0,
        metavar="S",
        help="stop once the target has refused every run for S seconds (connections, or a "
        "redirect, 401, 403, 404 or 405 each time), 0: never "
        "(default: %(default)s)",
    )
    for flag, default, what in (
        ("--connect-timeout", 10.0, "connecting"),
        ("--request-timeout", 30.0, "one non-streamed call"),
        ("--idle-timeout", 30.0, "longest stream silence"),
        ("--run-timeout", 120.0, "one run, end to end"),
    ):
        parser.add_argument(
            flag, type=float, default=default, metavar="S", help=f"{what} (default: %(default)s)"
        )


_FIELDS = (
    "target", "embedded", "protocol", "api_key", "runs", "duration", "concurrency",
    "subscribers_per_run", "subscriber_transport", "scenario", "rate", "arrival", "ramp",
    "max_error_rate", "compare", "processes", "progress_interval", "json_path", "plot_path",
    "model", "sim_deltas", "sim_delay_ms", "connect_timeout", "request_timeout",
    "idle_timeout", "run_timeout", "give_up",
)  # fmt: skip


def settings_from_args(ns: argparse.Namespace) -> LoadSettings:
    """LoadSettings from parsed arguments; raises ``ConfigError`` on invalid values."""
    values: dict[str, Any] = {name: getattr(ns, name) for name in _FIELDS}
    return LoadSettings(**values)


@asynccontextmanager
async def _target(settings: LoadSettings) -> AsyncIterator[str]:
    if settings.root is not None:
        yield settings.root
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
    settings: LoadSettings, *, stop: asyncio.Event | None = None, live: bool | None = None
) -> tuple[dict[str, Any], list[LoadStats]]:
    """The whole load test on the running loop: target up, load, report dict (``write_files``
    writes the ``--json`` and ``--plot`` files).

    ``live`` picks the progress display: a rich panel (True), plain lines every
    ``progress_interval`` seconds (False), or nothing (None).
    """
    if settings.plot_path is not None:
        require_matplotlib()
    stop = stop or asyncio.Event()
    t0 = time.time()
    async with _target(settings) as url:
        urls = [url] if settings.compare is None else [url, server_root(settings.compare)]
        stats = [LoadStats() for _ in urls]
        latest: dict[int, list[LoadStats]] = {}

        def snapshot() -> LoadStats:
            total = LoadStats()
            for part in merged(latest, len(urls)) if latest else stats:
                total.merge(part)
            return total

        shown = None
        if live is not None:
            progress = Progress(
                sys.stderr, snapshot, live=live, interval=settings.progress_interval
            )
            shown = asyncio.create_task(progress.run())
        try:
            if settings.processes > 1:
                stats = await run_in_processes(settings, urls, t0=t0, stop=stop, latest=latest)
            else:
                await execute(settings, urls, stop=stop, stats=stats, t0=t0)
        finally:
            if shown is not None:
                shown.cancel()
                await asyncio.wait({shown})
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    report = to_dict(settings, urls, stats, environment(event_loop=loop, started=t0))
    return report, stats


def write_files(
    settings: LoadSettings, report: dict[str, Any], stats: list[LoadStats]
) -> list[str]:
    """Write the ``--json`` and ``--plot`` files; one line for each that could not be written
    (their paths were checked before the load, but a full disk or a special file fails only
    now)."""
    problems = []
    if settings.json_path is not None:
        try:
            write_json(settings.json_path, report)
        except OSError as exc:
            problems.append(f"--json: cannot write {settings.json_path}: {exc.strerror or exc}")
    if settings.plot_path is not None:
        try:
            save_plot(settings.plot_path, report, stats[0])
        except OSError as exc:
            problems.append(f"--plot: cannot write {settings.plot_path}: {exc.strerror or exc}")
    return problems


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _main(settings: LoadSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGTERM as Ctrl+C: `timeout`, CI runners and `docker stop` send it, and the report (and
    # the workers' stop) must not be lost to it.
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    live = sys.stderr.isatty()
    try:
        report, stats = await run_async(
            settings, stop=stop, live=live if live or settings.progress_interval else None
        )
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    print(render_table(report), flush=True)
    problems = write_files(settings, report, stats)
    for problem in problems:
        print(f"runcast loadtest: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    return 0 if report["verdict"]["passed"] else 1


def run(settings: LoadSettings) -> int:
    """Run the load test in a new event loop (uvloop when installed); the exit status."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # Windows: plain asyncio
        factory = None
    # An embedded gateway logs each expected failure of a fault scenario; keep errors only.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    tune_collector()  # its own pauses would be in every figure (gateway/heap.py)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main(settings))
    except ConfigError as exc:
        print(f"runcast loadtest: error: {exc}", file=sys.stderr)
        return 2
