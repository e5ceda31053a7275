"""bench/leave_bench.py at N = 300: real sockets come and go, and the gateway lets go of them.

The live Python heap (tracemalloc) after the subscribers left must fall back far below what they
held, and not grow from one cycle to the next: a sink, transport or response the gateway kept
referencing would (keeping each subscriber's sink and transport adds ~1.3 KiB a subscriber, 0.4
MiB a cycle here), which RSS alone cannot tell from the allocator keeping freed memory for reuse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "leave_bench.py"


@pytest.mark.timeout(60)
def test_leave_bench_heap_falls_back_after_subscribers_leave(tmp_path: Path) -> None:
    report = tmp_path / "leave.json"
    argv = [sys.executable, str(BENCH), "--n", "300", "--cycles", "3", "--settle", "1.2"]
    argv += ["--trace", "--json", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(report.read_text())["rows"]
    assert [r["cycle"] for r in rows] == [1, 2, 3]
    held = rows[0]["held_heap_mib"]
    for r in rows:
        assert r["held_rss_mib"] > 0 and r["held_heap_mib"] > 0
        assert r["left_heap_mib"] < 0.2 * r["held_heap_mib"], r
    assert rows[-1]["left_heap_mib"] - rows[0]["left_heap_mib"] < 0.04 * held, rows
    assert "kept after the last cycle" in done.stdout
