"""runcast loadtest end to end against an embedded gateway and simulator on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.cli import main as runcast_main
from gateway.errors import ConfigError
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run, settings_from_args


@pytest.mark.parametrize("transport", ["sse", "ws", "mixed"])
def test_loadtest_every_run_completes_and_reaches_every_subscriber(
    tmp_path: Path, transport: str
) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        runs=20,
        concurrency=5,
        subscribers_per_run=2,
        subscriber_transport=transport,  # type: ignore[arg-type]
        sim_deltas=8,
        json_path=str(out),
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"runs", "runs_per_s", "events", "latency_ms", "errors", "bytes"}
    assert report["runs"] == {
        "started": 20,
        "ok": 20,
        "failed": 0,
        "interrupted": 0,
        "failed_by_kind": {},
    }
    events = report["events"]
    # text scenario: created, queued, in_progress, step created/in_progress, message
    # created/in_progress, 8 deltas, message completed, step completed, run completed, done.
    assert events["creator"] == 20 * 19
    assert events["subscribers"] == 2 * events["creator"]
    assert events["total"] == 3 * events["creator"]
    assert report["subscribers"] == {
        "complete": 40,
        "delivery_mismatches": 0,
        "deliveries_ahead_of_creator": report["subscribers"]["deliveries_ahead_of_creator"],
    }
    assert report["errors"] == {}
    latency = report["latency_ms"]
    assert latency["run_duration"]["count"] == 20
    assert latency["ttfe"]["count"] == 20
    assert latency["delivery_lag"]["count"] == events["subscribers"]
    for row in latency.values():
        assert 0 <= row["min"] <= row["p50"] <= row["p95"] <= row["p99"] <= row["max"]
    assert latency["ttfe"]["max"] <= latency["run_duration"]["max"]
    assert report["bytes"]["creator"] > 0 and report["bytes"]["subscribers"] > 0
    assert report["runs_per_s"] > 0 and events["per_s"] > 0


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [("failed", "run_failed"), ("server_error", "http_500"), ("error", "error_event")],
)
def test_loadtest_counts_failed_runs_by_kind(tmp_path: Path, scenario: str, kind: str) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True, runs=6, concurrency=3, scenario=scenario, sim_deltas=4, json_path=str(out)
    )
    assert run(settings) == 1
    runs = json.loads(out.read_text())["runs"]
    assert runs["ok"] == 0
    assert runs["failed_by_kind"] == {kind: 6}


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
    )
    assert run(settings) == 0
    report = json.loads(out.read_text())
    assert report["runs"]["ok"] == 4
    assert report["subscribers"]["delivery_mismatches"] == 0
    assert report["events"]["subscribers"] == 2 * report["events"]["creator"]


def test_loadtest_duration_bounds_the_work(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    settings = LoadSettings(
        embedded=True,
        duration=0.5,
        concurrency=2,
        subscribers_per_run=1,
        rate=10,
        json_path=str(out),
    )
    run(settings)
    report = json.loads(out.read_text())
    # 10 run starts per second for half a second: the first at once, then one per 100 ms.
    assert 1 <= report["runs"]["started"] <= 7
    assert report["runs"]["ok"] + report["runs"]["interrupted"] == report["runs"]["started"]
    assert report["elapsed_s"] < 5


def test_loadtest_cli_parses_flags() -> None:
    ns = build_parser().parse_args(
        [
            "loadtest",
            "--target",
            "http://127.0.0.1:9",
            "--api-key",
            "k",
            "--runs",
            "7",
            "--concurrency",
            "3",
            "--subscribers-per-run",
            "4",
            "--subscriber-transport",
            "mixed",
            "--scenario",
            "tool_call",
            "--rate",
            "2.5",
            "--json",
            "out.json",
        ]
    )
    settings = settings_from_args(ns)
    assert settings.target == "http://127.0.0.1:9"
    assert (settings.api_key, settings.runs, settings.duration) == ("k", 7, None)
    assert (settings.concurrency, settings.subscribers_per_run) == (3, 4)
    assert (settings.subscriber_transport, settings.scenario) == ("mixed", "tool_call")
    assert (settings.rate, settings.json_path) == (2.5, "out.json")
    assert settings.run_limit == 7
    assert settings.connections == 15


def test_loadtest_cli_rejects_runs_with_duration_and_missing_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--embedded", "--runs", "2", "--duration", "1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--runs", "2"])
    assert runcast_main(["loadtest", "--embedded", "--concurrency", "0"]) == 2
    assert "concurrency must be > 0" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        LoadSettings(embedded=True, runs=1, duration=1.0)
    assert LoadSettings(embedded=True).run_limit == 100
    assert LoadSettings(embedded=True, duration=2.0).run_limit is None


def test_loadtest_unreachable_target_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) is closed on 127.0.0.1 here; the probe fails fast.
    settings = LoadSettings(target="http://127.0.0.1:9", runs=1, connect_timeout=2.0)
    assert run(settings) == 2
    assert "cannot reach" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_loadtest_mints_subscribe_tokens_when_the_gateway_requires_them() -> None:
    from gateway.http.app import create_app
    from gateway.http.runner import start_runner
    from gateway.loadtest.cli import run_async
    from gateway.settings import Settings

    app = create_app(
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
        base = {"target": url, "runs": 3, "concurrency": 3, "subscribers_per_run": 2}
        report, _ = await run_async(LoadSettings(**base, api_key="loadtest-key"))
        assert report["runs"]["ok"] == 3
        assert report["subscribers"]["complete"] == 6
        with pytest.raises(ConfigError, match="--api-key"):
            await run_async(LoadSettings(**base))
    finally:
        await runner.cleanup()
