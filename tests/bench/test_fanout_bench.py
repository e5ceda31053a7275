"""bench/fanout_bench.py end to end at N = 20: the hub and the bare-socket ceiling it divides by.

A harness test, not a timing one: it keeps the component benchmark runnable (a frame format
change once broke its ceiling server unnoticed) and checks that every subscriber of both servers
got every delivery, over SSE and WebSocket, one event at a time and in bursts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fanout_bench.py"
N = 20


@pytest.mark.timeout(90)
def test_fanout_bench_small_run_delivers_everything(tmp_path: Path) -> None:
    report = tmp_path / "fanout.json"
    argv = [sys.executable, str(BENCH), "--n", str(N), "--transports", "sse", "ws"]
    argv += ["--deliveries", "4000", "--repeat", "1", "--paced-seconds", "0.3", "--spin", "off"]
    argv += ["--json", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    cases = {(r["server"], r["transport"], r["mode"]) for r in results}
    for server in ("ceiling", "runcast"):
        for transport in ("sse", "ws"):
            assert {(server, transport, "single"), (server, transport, "burst")} <= cases
    for r in results:
        where = f"{r['server']} {r['transport']} {r['mode']}"
        assert r["connected"] == N and r["complete"] == N, where
        for run in r["runs"]:
            assert run["deliveries"] == run["expected_deliveries"] > 0, where
        assert r["deliveries_per_s"] > 0, where
