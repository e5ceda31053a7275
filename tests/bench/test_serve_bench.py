"""bench/serve_bench.py end to end at N = 20: real `runcast serve`, peer, simulator and clients.

A harness test, not a timing one: every subscriber connects, gets every event of the run exactly
once (checked by seq in the client processes), and the counts the report gives agree. The client
processes are the native ones by default when a C compiler is found (else the Python ones); the
Python ones are run on their own too (``--clients python``).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve_bench.py"
sys.path.insert(0, str(BENCH.parent))
from _serve_native import compiler  # noqa: E402  (found through the line above)
from _serve_nchan import available as nchan_missing  # noqa: E402

N = 20
DELTAS = 200


@pytest.mark.timeout(90)
def test_serve_bench_quick_run_delivers_everything_once(tmp_path: Path) -> None:
    report = tmp_path / "serve.json"
    argv = [sys.executable, str(BENCH), "--quick", "--n", str(N), "--mode", "burst"]
    argv += ["--burst-events", str(DELTAS), "--settle", "0.1", "--json", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x peer" in done.stdout
    clients = "native" if compiler() else "python"
    assert f"subscriber clients: {clients} (" in done.stdout
    data = json.loads(report.read_text())
    assert data["clients"] == clients
    results = data["results"]
    assert {r["clients"] for r in results} == {clients}
    cases = {(r["server"], r["transport"]) for r in results}
    servers = ["runcast", "peer"]
    if nchan_missing() is None:  # nginx with libnginx-mod-nchan is installed: it runs too
        servers.append("nchan")
        assert "x nchan" in done.stdout
    else:
        assert "nchan: skipped" in done.stdout
    assert cases == {(s, t) for s in servers for t in ("sse", "ws")}
    for r in results:
        where = f"{r['server']} {r['transport']}"
        assert r["connected"] == N and r["connect_failures"] == 0, where
        # the run: lifecycle events around the text deltas and `done`, each numbered, to the SDK too
        assert r["events"] == r["creator_events"] > DELTAS, where
        # nchan is no gateway: no creator's copy
        assert r["creator_numbered"] == (0 if r["server"] == "nchan" else r["events"]), where
        assert r["lost"] == 0 and r["duplicates"] == 0 and r["cut"] == 0, where
        assert r["complete"] == N, where
        assert r["deliveries"] == r["expected_deliveries"] == N * r["events"], where
        assert 0 <= r["latency_p50_ms"] <= r["latency_p99_ms"] <= r["latency_max_ms"] + 0.01, where
        # CPU is read in clock ticks (10 ms): a short case on a busy machine may read as 0.
        assert r["server_cpu_cores"] >= 0, where
        assert math.isfinite(r["creator_lag_max_ms"]) == (r["server"] != "nchan"), where
        # the server's own fan-out time comes from its /metrics, which only runcast has
        fanout = r["server_fanout_p99_ms"]
        assert (fanout > 0) if r["server"] == "runcast" else math.isnan(fanout), where


@pytest.mark.timeout(60)
def test_serve_bench_python_clients(tmp_path: Path) -> None:
    """``--clients python``: the uvloop client processes, on runcast, both transports."""
    report = tmp_path / "serve.json"
    argv = [sys.executable, str(BENCH), "--quick", "--n", str(N), "--mode", "burst"]
    argv += ["--server", "runcast", "--clients", "python", "--burst-events", str(DELTAS)]
    argv += ["--settle", "0.1", "--json", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "subscriber clients: python (" in done.stdout
    data = json.loads(report.read_text())
    assert data["clients"] == "python"
    assert {(r["transport"], r["clients"]) for r in data["results"]} == {
        ("sse", "python"),
        ("ws", "python"),
    }
    for r in data["results"]:
        assert r["connected"] == r["complete"] == N, r["transport"]
        assert r["lost"] == 0 and r["duplicates"] == 0 and r["cut"] == 0, r["transport"]
        assert r["deliveries"] == N * r["events"] == N * r["creator_numbered"], r["transport"]


@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_serve_bench_redis_mode_splits_subscribers_over_two_nodes(tmp_path: Path) -> None:
    """Redis mode: two `runcast serve --broker redis://` nodes on a private redis-server, the
    subscribers of one client process on each node, the creator on the first: all get every event
    once, and the report counts the Redis scripts the run cost."""
    report = tmp_path / "serve.json"
    argv = [sys.executable, str(BENCH), "--quick", "--n", str(N), "--mode", "burst"]
    argv += ["--transport", "sse", "--server", "redis", "--burst-events", str(DELTAS)]
    argv += ["--settle", "0.1", "--json", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (r,) = json.loads(report.read_text())["results"]
    assert (r["server"], r["nodes"], r["connected"]) == ("redis", 2, N)
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["complete"] == N
    assert r["deliveries"] == N * r["events"] == N * r["creator_numbered"]
    # each published batch is one script per channel (the run's and the thread's): at least one
    # per batch, and a batch holds at least one event
    assert 0 < r["evalsha_per_event"] <= 2.01 and r["broker_round_trips_per_event"] > 0
    assert "EVALSHA per published event" in done.stdout
