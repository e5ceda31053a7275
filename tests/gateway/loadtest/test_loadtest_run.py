"""runcast loadtest end to end: real gateways and simulators on 127.0.0.1, real sockets."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.typedefs import Handler
from loadtest_helpers import check_report, run_embedded, serving

from gateway.errors import ConfigError
from gateway.http.app import create_app as create_gateway
from gateway.http.runner import start_runner
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run_async
from gateway.mock import MockSettings
from gateway.mock.app import SERVICE_KEY
from gateway.mock.responses import RESPONSES_KEY
from gateway.mock.service import MockService
from gateway.settings import Settings


@dataclass
class Stack:
    gateway: str
    simulator: str
    service: MockService
    app: web.Application
    posts: Counter[str]
    """Streamed POSTs the simulator answered 200, by path."""


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
    report = run_embedded(
        tmp_path,
        protocol=protocol,
        runs=4,
        concurrency=2,
        subscribers_per_run=2,
        subscriber_transport="mixed",
        sim_deltas=4,
    )
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


def test_loadtest_tool_call_runs_answer_the_action_and_complete(tmp_path: Path) -> None:
    report = run_embedded(
        tmp_path,
        runs=4,
        concurrency=2,
        scenario="tool_call",
        subscriber_transport="ws",
        sim_deltas=4,
    )
    assert report["runs"]["completed"] == 4
    assert report["subscribers"]["gaps"] == report["subscribers"]["duplicates"] == 0
    assert report["subscribers"]["deliveries"] == report["events"]["creator"] * 2


def test_loadtest_open_loop_rate_and_ramp(tmp_path: Path) -> None:
    runs = run_embedded(
        tmp_path, duration=1.0, rate=20, concurrency=50, subscribers_per_run=1, sim_deltas=4
    )["runs"]
    # 20 arrivals per second for 1 s, whatever the runs' speed.
    assert 18 <= runs["started"] <= 21
    assert runs["completed"] + runs["cut"] == runs["started"]

    poisson_ramp: dict[str, Any] = {
        "rate": 1,
        "ramp": "40:1",  # 0 -> 40 arrivals/s over 1 s: about 20 arrivals
        "arrival": "poisson",
        "concurrency": 50,
        "subscribers_per_run": 0,
        "sim_deltas": 4,
    }
    limits = LoadSettings(embedded=True, **poisson_ramp)
    assert limits.time_limit == 1.0 and limits.run_limit is None
    report = run_embedded(tmp_path, **poisson_ramp)
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
    report = run_embedded(
        tmp_path, runs=9, concurrency=4, processes=2, subscribers_per_run=1, sim_deltas=4
    )
    assert report["runs"]["started"] == report["runs"]["completed"] == 9
    assert report["subscribers"]["complete"] == 9
    assert report["latency_ms"]["ttfe"]["count"] == 9
    assert report["generator"]["processes"] == 2 and report["generator"]["cpu_s"] > 0


def test_loadtest_plot_has_the_expected_panels(tmp_path: Path) -> None:
    from PIL import Image

    from gateway.loadtest.plot import PANEL_TITLES, build_figure

    png = tmp_path / "load.png"
    report = run_embedded(tmp_path, runs=10, concurrency=2, sim_deltas=4, plot_path=str(png))
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 420) and image.mode == "RGBA"
    from gateway.loadtest.stats import LoadStats

    stats = LoadStats()
    for value in (0.001, 0.002, 0.004):
        stats.ttft.record(value)
    figure = build_figure(report, stats)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert tuple(titles) == PANEL_TITLES
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["first text (TTFT)"]
    # Nothing measured (no run completed): empty CDFs without a legend, and no warning on
    # stderr ("No artists with labels found to put in legend": an error under pytest).
    assert build_figure(report, LoadStats()).axes[0].get_legend() is None


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
        if protocol == "assistants":
            # Its subscribers' tokens come from POST /tokens, which takes a runcast key.
            with pytest.raises(ConfigError, match="--api-key"):
                await run_async(LoadSettings(**base))
        else:
            # Responses and Chat subscribers take theirs from the creator's response header.
            report, _ = await run_async(LoadSettings(**base))
            assert report["runs"]["completed"] == 3 and report["errors"] == {}
            assert report["subscribers"]["complete"] == 6
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_a_ramp_spread_over_processes_keeps_its_number_of_users(processes: int) -> None:
    # The ramp's levels were divided by N: a ramp to 1 user became 1/N per worker, and each
    # worker rounded it up to a user of its own (N users in all).
    from gateway.loadtest.loops import Lane, ramp_users
    from gateway.loadtest.workers import share

    settings = LoadSettings(
        embedded=True, ramp="1:3,3:2", concurrency=4, processes=processes, subscribers_per_run=0
    )
    per_worker = [
        ramp_users(share(settings, "http://127.0.0.1:9", i), Lane(i, processes))
        for i in range(processes)
    ]
    users = sorted(g for mine in per_worker for g in mine)
    assert users == [0, 1, 2]  # the ramp's 3 users, each in exactly one worker
    assert all(mine for mine in per_worker[:3])  # spread, not piled on one worker
