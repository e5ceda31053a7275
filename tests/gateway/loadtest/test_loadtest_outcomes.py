"""What a load test counts as failed, cut or refused, and why: real gateways and simulators on
127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from loadtest_helpers import check_report, run_embedded, serving

from gateway.hub import HubSettings
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run_async
from gateway.mock import MockSettings
from gateway.mock import create_app as create_mock
from gateway.tools import ToolRegistry


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [("failed", "run_failed"), ("server_error", "http_500"), ("error", "upstream_error")],
)
def test_loadtest_counts_failed_runs_by_kind(tmp_path: Path, scenario: str, kind: str) -> None:
    base: dict[str, Any] = {"runs": 4, "concurrency": 2, "scenario": scenario, "sim_deltas": 4}
    report = run_embedded(tmp_path, 1, **base)
    assert report["runs"]["outcomes"] == {kind: 4}
    if kind.startswith("http_"):
        # The server's own words come with the status: the code and message of its error body.
        assert report["error_details"][kind].startswith("server_error: ")
        # No run started: its subscribers had nothing to follow (they were counted complete).
        assert report["subscribers"]["complete"] == 0
    assert report["error_rate"] == 1.0
    assert report["errors"][kind] == 4
    # --max-error-rate decides the exit status.
    run_embedded(tmp_path, 0, **base, max_error_rate=1.0)


def test_loadtest_runs_in_flight_at_the_deadline_are_cut_not_failed(tmp_path: Path) -> None:
    # 16 deltas 60 ms apart: no run can finish in 0.4 s, every one is in flight at the deadline.
    # Cut, not failed (no error rate); but with nothing finished nothing was measured, and the
    # gate fails rather than pass a target that answers nothing in time (exit 1).
    report = run_embedded(
        tmp_path, 1, duration=0.4, concurrency=3, subscribers_per_run=1, sim_delay_ms=60
    )
    runs = report["runs"]
    assert runs["started"] == runs["cut"] == 3
    assert runs["failed"] == runs["completed"] == 0
    assert report["subscribers"]["cut"] == 3 and report["errors"] == {}
    assert report["elapsed_s"] < 3
    assert report["verdict"]["reasons"] == [
        "no run finished: 3 started, all cut by the deadline or a stop"
    ]


def test_a_load_that_starts_no_run_fails_the_gate(tmp_path: Path) -> None:
    # 0.01 arrivals/s: the first is due after 100 s, past the 0.5 s time limit. No run, no
    # error, and the gate passed (exit 0) a load that measured nothing.
    report = run_embedded(tmp_path, 1, rate=0.01, duration=0.5, subscribers_per_run=0)
    assert report["runs"]["started"] == 0
    assert report["verdict"]["reasons"] == [
        "no run started: the load ended before its first run, nothing was measured"
    ]


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


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["assistants", "responses", "chat"])
async def test_a_gateway_that_answers_tool_calls_itself_is_measured_whole(protocol: str) -> None:
    # The gateway runs the handler and follows up itself: its creator gets one continuous run
    # (Assistants: no requires_action; Responses, Chat: the whole chain in one stream), and the
    # first segment's channel carries the chain. Subscribers' copies match the creator's.
    async def lookup(**arguments: object) -> str:
        return "found " + ",".join(sorted(arguments))

    tools = ToolRegistry()
    tools.register(lookup, name="lookup")
    async with serving(MockSettings(deltas=4, seed=3), tools=tools) as (url, _, _):
        settings = LoadSettings(
            target=url,
            protocol=protocol,  # type: ignore[arg-type]
            scenario="tool_call",
            runs=4,
            concurrency=2,
            subscribers_per_run=2,
            progress_interval=0,
        )
        report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["completed"] == 4
    assert report["subscribers"]["complete"] == 8
    assert report["subscribers"]["gaps"] == report["subscribers"]["duplicates"] == 0
    assert report["errors"] == {}


@pytest.mark.asyncio
async def test_a_target_that_goes_away_is_not_hammered_and_the_load_gives_up() -> None:
    # The simulator stops listening mid-load: every user pauses between refused runs (instead of
    # failing thousands of runs a second), and after --give-up-after of nothing but refusals the
    # load stops, exits non-zero and says why.
    simulator = create_mock(MockSettings(deltas=4, delay_ms=10, seed=3))
    runner = web.AppRunner(simulator, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = LoadSettings(
        target=url,
        protocol="chat",
        duration=30,
        concurrency=4,
        subscribers_per_run=0,
        give_up=1.0,
        progress_interval=0,
    )
    load = asyncio.create_task(run_async(settings))
    try:
        await asyncio.sleep(0.6)
    finally:
        await runner.cleanup()
    report, _ = await asyncio.wait_for(load, timeout=15)
    check_report(report)
    assert report["runs"]["completed"] > 0
    refused = report["runs"]["outcomes"]["connection"]
    # Pauses of 50 ms growing to 1 s: a few refused runs per user in the second it takes.
    assert 0 < refused <= 4 * 12
    assert report["error_details"]["connection"] == f"cannot reach {url}: connection refused"
    assert (
        f"cannot reach {url}: connection refused for 1 s: load stopped"
        in (report["verdict"]["reasons"])
    )
    assert report["elapsed_s"] < 10


@pytest.mark.asyncio
async def test_an_answer_that_is_no_stream_says_so() -> None:
    # A 200 page or JSON answer where a stream was asked for was counted as "truncated", with
    # nothing in the report to say what came instead.
    @web.middleware
    async def page(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return web.Response(text="<html>login</html>", content_type="text/html")
        return await handler(request)

    async with serving(MockSettings(deltas=4, seed=3), mock_middleware=page) as (_, sim, _app):
        settings = LoadSettings(
            target=sim, protocol="chat", runs=2, concurrency=1, subscribers_per_run=0,
            progress_interval=0,
        )  # fmt: skip
        report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["outcomes"] == {"not_a_stream": 2}
    assert report["error_details"] == {
        "not_a_stream": "POST /chat/completions answered 200 text/html, not an event stream"
    }


@pytest.mark.asyncio
async def test_one_misdirected_answer_among_streaming_runs_does_not_stop_the_load() -> None:
    # The second run gets a 404, the others stream for 1.5 s each: the 404 made the load count
    # as refused until a run *ended* otherwise, so --give-up-after 0.5 stopped a healthy load.
    posts = 0

    @web.middleware
    async def one_404(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal posts
        if request.method == "POST" and request.path == "/v1/chat/completions":
            posts += 1
            if posts == 2:
                return web.json_response({"error": {"message": "no"}}, status=404)
        return await handler(request)

    simulator = MockSettings(deltas=10, delay_ms=150, seed=3)
    async with serving(simulator, mock_middleware=one_404) as (_, sim, _app):
        settings = LoadSettings(
            target=sim, protocol="chat", duration=2.5, concurrency=2, subscribers_per_run=0,
            give_up=0.5, max_error_rate=1.0, progress_interval=0,
        )  # fmt: skip
        report, _ = await run_async(settings)
    check_report(report)
    assert report["runs"]["outcomes"].get("http_404") == 1
    assert report["runs"]["completed"] >= 2
    assert not [r for r in report["verdict"]["reasons"] if "load stopped" in r], report["verdict"]
