"""What runcast adds to each event's latency, against the floor of any Python gateway's extra hop.

``runcast loadtest --compare`` pairs each run through a target with one straight to the
simulator, begun together, and takes the difference event by event (README, Load testing). This
runs the same load, in the same session and interleaved, through three targets:

- **runcast**: ``runcast serve`` in front of the simulator;
- **bare proxy**: ``_bare_proxy.py``, an aiohttp pass-through with nothing of a gateway (no
  parsing, fan-out, history, auth or logs): what the extra hop alone costs here;
- **nginx proxy**: nginx's ``proxy_pass`` (one process, unbuffered, upstream keep-alive), when
  nginx is installed: the same hop made by a C server, the floor of any proxy on this machine;
- **A/A**: the simulator compared with itself, the instrument's own noise floor.

The servers under test run alone on CPU 0; the simulator and the load generator share CPU 1
(``taskset``, as ``serve_bench.py`` does). Prints p50 and p99 of the added latency per event and
of the first event, for every round, then the medians and runcast's excess over the bare proxy.

    python bench/overhead_bench.py [--rounds 2] [--rate 130] [--duration 15] [--protocol assistants]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from _nginx import HEAD, TEMP_PATHS, start_nginx
from _serve_procs import (
    BENCH,
    CLIENT_CPU,
    Child,
    _wait_healthy,
    free_port,
    start_mock,
    start_runcast,
    wait_mock,
)

TARGETS = ("runcast", "bare proxy", "nginx proxy", "A/A")

NGINX_PROXY = (
    HEAD
    + "http {{"
    + TEMP_PATHS
    + """  upstream simulator {{ server {upstream}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port} backlog=65535;
    location = /healthz {{ return 200 "ok"; }}
    location /v1/ {{
      proxy_pass http://simulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""
)
"""nginx passing ``/v1/*`` to the simulator as it comes, over kept-alive connections."""


def start_bare(upstream: str) -> tuple[Child, str]:
    port = free_port()
    argv = [sys.executable, str(BENCH / "_bare_proxy.py"), "--port", str(port)]
    child = Child("bare proxy", [*argv, "--upstream", upstream], 0)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(child, base)
    return child, base


def start_nginx_proxy(upstream: str) -> tuple[Child, str]:
    return start_nginx("nginx proxy", NGINX_PROXY, upstream=urlsplit(upstream).netloc)


def load(target: str, simulator: str, args: argparse.Namespace) -> dict[str, float]:
    """One ``runcast loadtest --compare`` run; its added latency in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "gateway", "loadtest", "--target", target]
        argv += ["--compare", simulator, "--protocol", args.protocol, "--rate", str(args.rate)]
        argv += ["--arrival", "poisson", "--concurrency", "300", "--duration", str(args.duration)]
        argv += ["--subscribers-per-run", "0", "--progress-interval", "0", "--json", str(report)]
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            argv = ["taskset", "-c", str(CLIENT_CPU), *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 120)
        if not report.exists():
            raise RuntimeError(f"loadtest failed ({done.returncode}): {done.stderr[-2000:]}")
        added = json.loads(report.read_text())["compare"]["added_latency_ms"]
    return {k: added[k] for k in ("event_p50", "event_p99", "ttfe_p50", "ttfe_p99", "pairs")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=130.0, help="Poisson arrivals/s")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load")
    parser.add_argument("--protocol", default="assistants")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mock, simulator = start_mock(16, 50)
    children = [mock]
    try:
        wait_mock(mock)
        runcast, runcast_url = start_runcast(simulator, [])
        bare, bare_url = start_bare(simulator)
        children += [runcast, bare]
        urls = {"runcast": runcast_url, "bare proxy": bare_url, "A/A": simulator}
        if shutil.which("nginx") is not None:
            nginx, urls["nginx proxy"] = start_nginx_proxy(simulator)
            children.append(nginx)
        urls = {name: urls[name] for name in TARGETS if name in urls}
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for i in range(args.rounds):
            for name in urls:
                row = load(urls[name], simulator, args)
                rows[name].append(row)
                print(
                    f"round {i + 1} {name:>10}: per event p50 {row['event_p50']:6.2f} ms, "
                    f"p99 {row['event_p99']:7.2f} ms | first event p50 {row['ttfe_p50']:6.2f} ms, "
                    f"p99 {row['ttfe_p99']:7.2f} ms ({row['pairs']:,} pairs)",
                    flush=True,
                )
    finally:
        for child in reversed(children):
            child.stop()
    medians = {
        name: {k: statistics.median(r[k] for r in rows[name]) for k in ("event_p50", "event_p99")}
        for name in rows
    }
    for name in rows:
        m = medians[name]
        print(
            f"median {name:>10}: per event p50 {m['event_p50']:6.2f} ms, p99 {m['event_p99']:7.2f} ms"
        )
    ours = medians["runcast"]
    for name in ("bare proxy", "nginx proxy"):
        if name not in medians:
            continue
        floor = medians[name]
        print(
            f"runcast over the {name}: p50 {ours['event_p50'] - floor['event_p50']:+.2f} ms, "
            f"p99 {ours['event_p99'] - floor['event_p99']:+.2f} ms "
            f"({ours['event_p99'] / floor['event_p99']:.2f}x its p99)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": rows, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
