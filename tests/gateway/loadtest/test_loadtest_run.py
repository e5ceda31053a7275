"""runcast loadtest end to end: real gateways and simulators on 127.0.0.1, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.cli import build_parser
from gateway.cli import main as runcast_main
from gateway.errors import ConfigError
from gateway.http.app import create_app as create_gateway
from gateway.http.runner import start_runner
from gateway.hub import HubSettings
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run, run_async, settings_from_args
from gateway.mock import MockSettings
from gateway.mock import create_app as create_mock
from gateway.mock.app import SERVICE_KEY
from gateway.mock.responses import RESPONSES_KEY
from gateway.mock.service import MockService
from gateway.settings import Settings
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


@dataclass
class Stack:
    gateway: str
    simulator: str
    service: MockService
    app: web.Application
    posts: Counter[str]
    """Streamed POSTs the simulator answered 200, by path."""


@contextlib.asynccontextmanager
async def serving(
    simulator: MockSettings,
    *,
    hub: HubSettings | None = None,
    mock_middleware: Middleware | None = None,
    gateway_middleware: Middleware | None = None,
    shutdown_timeout: float = 2.0,
) -> AsyncIterator[tuple[str, str, web.Application]]:
    """A simulator and a runcast gateway in front of it, each on its own port: (gateway URL,
    simulator URL, simulator app); a middleware may be added to either."""
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
        )
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


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    """A simulator and a runcast gateway in front of it, counting the streamed POSTs served."""
    posts: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and response.status == 200:
            posts[request.path] += 1
        return response

    async with serving(MockSettings(deltas=6, seed=3), mock_middleware=count) as (url, mock, app):
        yield Stack(url, mock, app[SERVICE_KEY], app, posts)


def served(service: MockService) -> dict[str, int]:
    """What the simulator served: threads, runs by status, answer characters."""
    counts: dict[str, int] = {"threads": 0, "runs": 0, "completed": 0, "chars": 0}
    for thread in service.store.threads.values():
        counts["threads"] += 1
        for record in thread.runs.values():
            counts["runs"] += 1
            counts["completed"] += record.run.status == "completed"
        for message in thread.messages.values():
            if message.role == "assistant":
                counts["chars"] += sum(len(part.text.value) for part in message.content)
    return counts


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["sse", "mixed"])
async def test_loadtest_counts_equal_what_the_simulator_served(
    stack: Stack, transport: str
) -> None:
    settings = LoadSettings(
        target=stack.gateway,
        runs=12,
        concurrency=4,
        subscribers_per_run=2,
        subscriber_transport=transport,  # type: ignore[arg-type]
    )
    report, _ = await run_async(settings)
    check_report(report)
    sim = served(stack.service)
    assert report["runs"]["started"] == report["runs"]["completed"] == sim["runs"] == 12
    assert sim == {"threads": 12, "runs": 12, "completed": 12, "chars": sim["chars"]}
    assert report["output"]["chars"] == sim["chars"] > 0
    subs = report["subscribers"]
    assert subs["complete"] == 24 and subs["gaps"] == subs["duplicates"] == 0
    # Every upstream event of every run reached both subscribers, matched one to one.
    events = report["events"]
    assert subs["deliveries"] == report["latency_ms"]["delivery_lag"]["count"]
    assert subs["deliveries"] == 2 * (events["creator"] - 0)
    assert subs["replayed"] == 0  # Assistants subscribers join before the run starts
    assert 0 <= subs["subscriber_first"] <= subs["deliveries"]
    latency = report["latency_ms"]
    assert latency["ttfe"]["count"] == latency["ttft"]["count"] == 12
    # text scenario, 6 deltas: 5 gaps between deltas per run
    assert latency["inter_delta"]["count"] == 12 * 5
    assert latency["ttfe"]["max"] <= latency["run_duration"]["max"]
    assert report["errors"] == {} and report["verdict"] == {"passed": True, "reasons": []}
    assert sum(row["completed"] for row in report["timeline"]) == 12


def response_chars(app: web.Application) -> tuple[int, int]:
    """Responses the simulator stored as completed, and the characters of their output text."""
    completed = chars = 0
    for record in app[RESPONSES_KEY].store.responses.values():
        response = msgspec.to_builtins(record.response)
        completed += response["status"] == "completed"
        for item in response["output"]:
            for part in item.get("content") or ():
                chars += len(part.get("text", "")) if part["type"] == "output_text" else 0
    return completed, chars


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocol", "path"), [("responses", "/v1/responses"), ("chat", "/v1/chat/completions")]
)
@pytest.mark.parametrize("transport", ["sse", "mixed"])
async def test_loadtest_protocol_streams_end_to_end(
    stack: Stack, protocol: str, path: str, transport: str
) -> None:
    settings = LoadSettings(
        target=stack.gateway,
        protocol=protocol,  # type: ignore[arg-type]
        runs=10,
        concurrency=4,
        subscribers_per_run=2,
        subscriber_transport=transport,  # type: ignore[arg-type]
    )
    report, _ = await run_async(settings)
    check_report(report)
    assert report["errors"] == {} and report["verdict"] == {"passed": True, "reasons": []}
    assert report["runs"]["started"] == report["runs"]["completed"] == 10
    # Every run is one streamed POST the simulator answered, and nothing else was asked of it.
    assert stack.posts == {path: 10}
    if protocol == "responses":
        assert response_chars(stack.app) == (10, report["output"]["chars"])
    assert report["output"]["chars"] > 0
    subs = report["subscribers"]
    assert subs["complete"] == 20 and subs["gaps"] == subs["duplicates"] == 0
    # Each subscriber's copy matched the creator's event for event (the upstream's events only);
    # the events the creator had before a subscriber joined are replayed, not timed.
    assert subs["deliveries"] == report["latency_ms"]["delivery_lag"]["count"]
    assert subs["deliveries"] + subs["replayed"] == 2 * report["events"]["creator"] > 0
    latency = report["latency_ms"]
    assert latency["ttfe"]["count"] == latency["ttft"]["count"] == 10
    assert latency["inter_delta"]["count"] == 10 * 5  # 6 deltas a run
    assert sum(row["completed"] for row in report["timeline"]) == 10


@pytest.mark.parametrize("protocol", ["responses", "chat"])
def test_loadtest_embedded_protocol_with_subscribers(tmp_path: Path, protocol: str) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        protocol=protocol,  # type: ignore[arg-type]
        runs=4,
        concurrency=2,
        subscribers_per_run=2,
        subscriber_transport="mixed",
        sim_deltas=4,
        json_path=str(out),
        progress_interval=0,
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    check_report(report)
    assert report["config"]["protocol"] == protocol
    assert report["runs"]["completed"] == 4 and report["errors"] == {}
    subs = report["subscribers"]
    assert subs["complete"] == 8 and subs["gaps"] == subs["duplicates"] == 0
    assert subs["deliveries"] + subs["replayed"] == 2 * report["events"]["creator"] > 0


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["responses", "chat"])
async def test_loadtest_protocol_tool_calls_follow_up_and_complete(
    stack: Stack, protocol: str
) -> None:
    settings = LoadSettings(
        target=stack.gateway,
        protocol=protocol,  # type: ignore[arg-type]
        scenario="tool_call",
        runs=4,
        concurrency=2,
        subscribers_per_run=1,
    )
    report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["completed"] == 4 and report["errors"] == {}
    # Two POSTs a run: the call, then its output; subscribers follow the first segment only.
    assert sum(stack.posts.values()) == 8
    assert report["subscribers"]["complete"] == 4
    assert report["subscribers"]["gaps"] == report["subscribers"]["duplicates"] == 0


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [("failed", "run_failed"), ("server_error", "http_500"), ("error", "upstream_error")],
)
def test_loadtest_counts_failed_runs_by_kind(tmp_path: Path, scenario: str, kind: str) -> None:
    out = tmp_path / "report.json"
    base: dict[str, Any] = {
        "embedded": True, "runs": 4, "concurrency": 2, "scenario": scenario,
        "sim_deltas": 4, "json_path": str(out), "progress_interval": 0,
    }  # fmt: skip
    assert run(LoadSettings(**base)) == 1
    report = json.loads(out.read_text())
    check_report(report)
    assert report["runs"]["outcomes"] == {kind: 4}
    if kind.startswith("http_"):
        # The server's own words come with the status: the code and message of its error body.
        assert report["error_details"][kind].startswith("server_error: ")
    assert report["error_rate"] == 1.0
    assert report["errors"][kind] == 4
    # --max-error-rate decides the exit status.
    assert run(LoadSettings(**base, max_error_rate=1.0)) == 0


def test_loadtest_tool_call_runs_answer_the_action_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        runs=4,
        concurrency=2,
        scenario="tool_call",
        subscriber_transport="ws",
        sim_deltas=4,
        json_path=str(out),
        progress_interval=0,
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    assert report["runs"]["completed"] == 4
    assert report["subscribers"]["gaps"] == report["subscribers"]["duplicates"] == 0
    assert report["subscribers"]["deliveries"] == report["events"]["creator"] * 2


def test_loadtest_runs_in_flight_at_the_deadline_are_cut_not_failed(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    # 16 deltas 60 ms apart: no run can finish in 0.4 s, every one is in flight at the deadline.
    settings = LoadSettings(
        embedded=True,
        duration=0.4,
        concurrency=3,
        subscribers_per_run=1,
        sim_delay_ms=60,
        json_path=str(out),
        progress_interval=0,
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    check_report(report)
    runs = report["runs"]
    assert runs["started"] == runs["cut"] == 3
    assert runs["failed"] == runs["completed"] == 0
    assert report["subscribers"]["cut"] == 3 and report["errors"] == {}
    assert report["elapsed_s"] < 3


def test_loadtest_open_loop_rate_and_ramp(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        duration=1.0,
        rate=20,
        concurrency=50,
        subscribers_per_run=1,
        sim_deltas=4,
        json_path=str(out),
        progress_interval=0,
    )
    assert run(settings) == 0
    runs = json.loads(out.read_text())["runs"]
    # 20 arrivals per second for 1 s, whatever the runs' speed.
    assert 18 <= runs["started"] <= 21
    assert runs["completed"] + runs["cut"] == runs["started"]

    poisson_ramp = LoadSettings(
        embedded=True,
        rate=1,
        ramp="40:1",  # 0 -> 40 arrivals/s over 1 s: about 20 arrivals
        arrival="poisson",
        concurrency=50,
        subscribers_per_run=0,
        sim_deltas=4,
        json_path=str(out),
        progress_interval=0,
    )
    assert poisson_ramp.time_limit == 1.0 and poisson_ramp.run_limit is None
    assert run(poisson_ramp) == 0
    report = json.loads(out.read_text())
    assert 5 <= report["runs"]["started"] <= 40
    assert report["config"]["ramp"] == "40:1" and report["config"]["arrival"] == "poisson"


@pytest.mark.asyncio
async def test_loadtest_target_given_with_v1_is_understood(stack: Stack) -> None:
    for suffix in ("/v1", "/v1/"):
        settings = LoadSettings(target=stack.gateway + suffix, runs=2, concurrency=2)
        report, _ = await run_async(settings)
        assert report["target"] == stack.gateway
        assert report["runs"]["completed"] == 2 and report["subscribers"]["complete"] == 4


@pytest.mark.asyncio
async def test_loadtest_compare_prints_added_latency(stack: Stack) -> None:
    settings = LoadSettings(
        target=stack.gateway,
        compare=stack.simulator + "/v1",
        runs=10,
        concurrency=5,
        subscribers_per_run=0,
    )
    report, _stats = await run_async(settings)
    check_report(report)
    compare = report["compare"]
    assert compare["target"] == stack.simulator
    assert report["runs"]["completed"] == compare["runs"]["completed"] == 10
    # Both targets stream the same runs: same events per run, from the same simulator.
    assert report["events"]["creator"] == compare["events"]["creator"]
    assert served(stack.service)["runs"] == 20
    added = compare["added_latency_ms"]
    # Paired: each of the 10 runs through the gateway against the one begun with it direct.
    assert added["pairs"] == 10
    assert added["event_p50"] is not None and added["event_p99"] is not None
    assert added["event_p50"] <= added["event_p99"]
    from gateway.loadtest.report import render_table

    assert "added latency per event: p50" in render_table(report)


def test_loadtest_spreads_users_over_processes(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        runs=9,
        concurrency=4,
        processes=2,
        subscribers_per_run=1,
        sim_deltas=4,
        json_path=str(out),
        progress_interval=0,
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    check_report(report)
    assert report["runs"]["started"] == report["runs"]["completed"] == 9
    assert report["subscribers"]["complete"] == 9
    assert report["latency_ms"]["ttfe"]["count"] == 9
    assert report["generator"]["processes"] == 2 and report["generator"]["cpu_s"] > 0


def test_loadtest_plot_has_the_expected_panels(tmp_path: Path) -> None:
    from PIL import Image

    from gateway.loadtest.plot import PANEL_TITLES, build_figure

    out = tmp_path / "report.json"
    png = tmp_path / "load.png"
    settings = LoadSettings(
        embedded=True,
        runs=10,
        concurrency=2,
        sim_deltas=4,
        json_path=str(out),
        plot_path=str(png),
        progress_interval=0,
    )
    assert run(settings) == 0
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 420) and image.mode == "RGBA"
    report = json.loads(out.read_text())
    from gateway.loadtest.stats import LoadStats

    stats = LoadStats()
    for value in (0.001, 0.002, 0.004):
        stats.ttft.record(value)
    figure = build_figure(report, stats)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert tuple(titles) == PANEL_TITLES
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["first text (TTFT)"]


@pytest.mark.asyncio
async def test_loadtest_plain_progress_lines_when_not_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = LoadSettings(
        embedded=True, duration=1.2, concurrency=2, sim_delay_ms=10, progress_interval=0.2
    )
    await run_async(settings, live=False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("[") and "runs/s" in line and "p99 TTFT" in line for line in lines)
    assert not any("\x1b[" in line for line in lines)


def test_loadtest_live_progress_under_a_pseudo_terminal() -> None:
    import os
    import pty

    primary, secondary = pty.openpty()
    cmd = [sys.executable, "-m", "gateway.cli", "loadtest", "--embedded", "--duration", "1"]
    cmd += ["--concurrency", "2", "--sim-delay-ms", "10", "--subscribers-per-run", "1"]
    proc = subprocess.Popen(cmd, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = b"".join(chunks).decode()
    assert "\x1b[" in text  # rich redraws in place
    assert "runcast loadtest" in text and "p99 TTFT" in text and "runs/s" in text
    assert "verdict     passed" in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """A server that answers 404 to every request: a target speaking none of the protocols."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--target", f"http://127.0.0.1:{_closed_port()}/v1", "--runs", "1"],
            "cannot reach http://127.0.0.1:",
        ),
        (
            ["--target", "{not_found}", "--protocol", "responses", "--subscribers-per-run", "0"],
            "answered 404: the target does not speak --protocol responses",
        ),
        (["--embedded", "--ramp", "10:x"], "--ramp: '10:x' is not LEVEL:SECONDS"),
    ],
)
def test_loadtest_bad_target_is_one_clear_line(
    args: list[str], message: str, not_found_server: str
) -> None:
    args = [arg.replace("{not_found}", not_found_server) for arg in args]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("runcast loadtest: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and "Error(" not in proc.stderr


def test_loadtest_cli_parses_flags() -> None:
    ns = build_parser().parse_args(
        [
            "loadtest", "--target", "http://127.0.0.1:9/v1", "--api-key", "k", "--runs", "7",
            "--concurrency", "3", "--subscribers-per-run", "4", "--subscriber-transport", "mixed",
            "--scenario", "tool_call", "--rate", "2.5", "--arrival", "poisson", "--json",
            "out.json", "--protocol", "chat", "--ramp", "5:1,5:2", "--max-error-rate", "0.1",
            "--compare", "http://127.0.0.1:10", "--processes", "2", "--plot", "p.png",
            "--progress-interval", "1",
        ]
    )  # fmt: skip
    settings = settings_from_args(ns)
    assert settings.root == "http://127.0.0.1:9"
    assert (settings.api_key, settings.runs, settings.duration) == ("k", 7, None)
    assert (settings.concurrency, settings.subscribers_per_run) == (3, 4)
    assert (settings.subscriber_transport, settings.scenario) == ("mixed", "tool_call")
    assert (settings.rate, settings.arrival, settings.json_path) == (2.5, "poisson", "out.json")
    assert (settings.protocol, settings.max_error_rate, settings.processes) == ("chat", 0.1, 2)
    assert (settings.compare, settings.plot_path, settings.progress_interval) == (
        "http://127.0.0.1:10",
        "p.png",
        1.0,
    )
    assert settings.time_limit == 3.0 and settings.run_limit == 7
    assert settings.connections == 15


def test_loadtest_cli_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--embedded", "--runs", "2", "--duration", "1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--runs", "2"])
    for args, message in (
        (["--concurrency", "0"], "--concurrency must be > 0"),
        (["--max-error-rate", "1.5"], "--max-error-rate must be between 0 and 1"),
        (["--processes", "3", "--concurrency", "2"], "--processes cannot exceed"),
        (["--compare", "ftp://x"], "--compare must be an http(s) URL"),
        (["--rate", "nan"], "--rate must be > 0"),
    ):
        assert runcast_main(["loadtest", "--embedded", *args]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError):
        LoadSettings(embedded=True, runs=1, duration=1.0)
    assert LoadSettings(embedded=True).run_limit == 100
    assert LoadSettings(embedded=True, duration=2.0).run_limit is None


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["assistants", "responses", "chat"])
async def test_loadtest_mints_subscribe_tokens_when_the_gateway_requires_them(
    protocol: str,
) -> None:
    app = create_gateway(
        Settings(
            port=0,
            api_keys=("loadtest-key",),
            subscribe_auth="token",
            token_secret="s" * 32,
            shutdown_timeout=2.0,
        )
    )
    runner, url = await start_runner(app, "127.0.0.1", 0)
    try:
        base: dict[str, Any] = {
            "target": url, "protocol": protocol, "runs": 3, "concurrency": 3,
            "subscribers_per_run": 2,
        }  # fmt: skip
        report, _ = await run_async(LoadSettings(**base, api_key="loadtest-key"))
        assert report["runs"]["completed"] == 3
        assert report["subscribers"]["complete"] == 6
        assert report["config"].get("api_key") is None  # secrets never reach the report
        with pytest.raises(ConfigError, match="--api-key"):
            await run_async(LoadSettings(**base))
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_refused_subscriber_is_reported_with_the_servers_reason() -> None:
    # One client address may hold one pending thread stream: the second run's subscriber is
    # refused (429) and the report says why, in the gateway's words, without control bytes.
    simulator = MockSettings(deltas=40, delay_ms=20, seed=3)
    async with serving(simulator, hub=HubSettings(max_pending_channels_per_client=1)) as served_:
        settings = LoadSettings(
            target=served_[0], runs=4, concurrency=4, subscribers_per_run=1, progress_interval=0
        )
        report, _ = await run_async(settings)
    check_report(report)
    assert report["errors"].get("subscriber_http_429", 0) >= 1
    detail = report["error_details"]["subscriber_http_429"]
    assert detail.startswith("too_many_channels_per_client: ")
    assert detail.isprintable()


@pytest.mark.asyncio
async def test_subscribers_still_reading_at_the_deadline_are_cut_not_errors() -> None:
    # The creator's copy of each run ends at once, its subscribers' channels answer 2 s late: at
    # the 1 s deadline every finished run is still waiting for them. They were cut by the load
    # test's own stop, as the runs in flight are, and are no failure of the target.
    @web.middleware
    async def late_streams(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/streams/"):
            await asyncio.sleep(2)
        return await handler(request)

    simulator = MockSettings(deltas=4, seed=3)
    async with serving(simulator, gateway_middleware=late_streams, shutdown_timeout=0.5) as (
        url,
        _,
        _,
    ):
        settings = LoadSettings(
            target=url,
            protocol="responses",
            duration=1.0,
            concurrency=2,
            subscribers_per_run=1,
            progress_interval=0,
        )
        report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["cut"] >= 2
    assert report["subscribers"]["cut"] >= 2
    assert report["errors"] == {}


@pytest.mark.asyncio
async def test_runs_that_fail_before_their_stream_count_in_the_error_rate() -> None:
    # The run's first call (creating its thread) fails: each run failed, so the error rate that
    # decides the exit status is 1.0, not the share of runs whose stream went wrong.
    @web.middleware
    async def no_threads(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/threads":
            body = {"error": {"message": "down", "type": "server_error", "code": "down"}}
            return web.json_response(body, status=500)
        return await handler(request)

    async with serving(MockSettings(deltas=4, seed=3), mock_middleware=no_threads) as served_:
        settings = LoadSettings(target=served_[0], runs=4, concurrency=2, progress_interval=0)
        report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["outcomes"] == {"setup_http_500": 4}
    assert report["error_details"] == {"setup_http_500": "down: down"}
    assert report["error_rate"] == 1.0
