"""Fan-out benchmark: one run's events to N subscribers, runcast's hub against a bare-socket ceiling.

For each transport (SSE, WebSocket) and N (100, 1,000, 10,000) two servers are measured over the same
subscriber clients:

- ``runcast``: an aiohttp app on uvloop whose handler is ``gateway.hub.serve_subscriber`` on a
  ``MemoryBroker`` channel; the emitter calls ``broker.publish``.
- ``ceiling``: a bare asyncio ``Protocol`` server on uvloop that answers the HTTP/WebSocket handshake
  and writes each event's pre-encoded frame (the same bytes) with ``transport.write`` to every
  connection, one write per event and connection, nothing else.

Modes: ``single`` (one event per publish, back to back), ``burst`` (batches of ``--burst`` events per
publish) and, at N = 1,000, ``paced`` (one event at a time at ``--rate`` events/s, for latency).
The emitter yields to the loop after each publish. Each event's data embeds ``time.time_ns()`` at
emission; clients (two processes of raw asyncio protocols that only count a marker and, on a spread
sample of connections, parse timestamps) report receive times. Deliveries/s is N x events over
first emission to last receipt. RSS per subscriber is the server's RSS growth / N while the N
subscribers are connected and idle.

Method: the server is pinned to CPU 0 and the clients to CPU 1 (on two or more CPUs). In the
throughput modes the clients busy-poll, so the server's sends never pay for waking a sleeping reader
on loopback (an IPI, costly in VMs, and absent when readers are on other hosts); the paced mode
measures latency with ordinary sleeping clients. Each mode runs ``--repeat`` times: the best
deliveries/s and the median latencies are reported, every run is in the JSON.

Run: ``python bench/fanout_bench.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fanout_clients import client_main
from _fanout_common import CLIENT_PROCS, TARGETS, raise_fd_limit
from _fanout_servers import server_main

# -- orchestration ------------------------------------------------------------------------------


class Proc:
    """A child process driven over two one-way pipes (the child's loop makes its read end
    non-blocking, which must not affect the end it answers on)."""

    def __init__(self, ctx: Any, target: Callable[..., None], *args: Any) -> None:
        cmd_read, self.cmd = ctx.Pipe(duplex=False)
        self.answers, answer_write = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(cmd_read, answer_write, *args), daemon=True)
        self.proc.start()
        cmd_read.close()
        answer_write.close()

    def send(self, *cmd: Any) -> None:
        self.cmd.send(cmd)

    def call(self, *cmd: Any, timeout: float = 120.0) -> Any:
        self.cmd.send(cmd)
        return self.recv(timeout)

    def recv(self, timeout: float = 120.0) -> Any:
        if not self.answers.poll(timeout):
            raise TimeoutError(f"no answer from {self.proc.name}")
        return self.answers.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.cmd.send(("stop",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


def run_case(
    ctx: Any, clients: list[Proc], kind: str, transport: str, n: int, modes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    server = Proc(ctx, server_main, kind)
    _, port, _rss0 = server.recv(30)
    time.sleep(0.2)
    _, rss_before, _ = server.call("status")
    per = [n // CLIENT_PROCS + (1 if i < n % CLIENT_PROCS else 0) for i in range(CLIENT_PROCS)]
    sample_every = max(1, n // 200)
    for i, c in enumerate(clients):
        c.send("connect", port, transport, per[i], sample_every, i)
    ready = sum(c.recv(120) for c in clients)
    deadline = time.monotonic() + 30
    while True:
        subscribers, rss_after, _ = server.call("status")
        if subscribers >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    subscribers, rss_after, _ = server.call("status")
    rss_per_sub = (rss_after - rss_before) / max(subscribers, 1)
    results = []
    for mode in modes:
        runs = [_measure(server, clients, mode, n) for _ in range(mode["repeat"])]
        _, _, stats = server.call("status")
        results.append(
            {
                "server": kind,
                "transport": transport,
                "n": n,
                "mode": mode["name"],
                "events": mode["events"],
                "batch": mode["batch"],
                "rate": mode["rate"],
                "spin": mode["spin"],
                "connected": ready,
                "rss_per_subscriber_bytes": rss_per_sub,
                # Best of the repeats for throughput (least disturbed by other load), median
                # for latency; every repeat is kept.
                "deliveries_per_s": max(r["deliveries_per_s"] for r in runs),
                "latency_p50_ms": statistics.median(r["latency_p50_ms"] for r in runs),
                "latency_p99_ms": statistics.median(r["latency_p99_ms"] for r in runs),
                "complete": min(r["complete"] for r in runs),
                "runs": runs,
                **stats,
            }
        )
    for c in clients:
        c.call("close")
    server.stop()
    return results


def _measure(server: Proc, clients: list[Proc], mode: dict[str, Any], n: int) -> dict[str, Any]:
    for c in clients:
        assert c.call("arm", mode["events"], mode["spin"]) == "armed"
        c.send("wait", mode["timeout"])
    t0, t1 = server.call(
        "emit", mode["events"], mode["batch"], mode["rate"], mode["pad"], timeout=300
    )
    outs = [c.recv(mode["timeout"] + 30) for c in clients]
    last = max(o["last_ns"] for o in outs)
    deliveries = sum(o["deliveries"] for o in outs)
    lat = [x for o in outs for x in o["latencies"]]
    elapsed = max(last - t0, 1) / 1e9
    return {
        "complete": sum(o["complete"] for o in outs),
        "deliveries": deliveries,
        "expected_deliveries": n * mode["events"],
        "elapsed_s": elapsed,
        "emit_s": (t1 - t0) / 1e9,
        "deliveries_per_s": deliveries / elapsed,
        "latency_p50_ms": percentile(lat, 0.50),
        "latency_p99_ms": percentile(lat, 0.99),
        "latency_samples": len(lat),
    }


def build_modes(n: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    total = args.deliveries
    events = max(args.burst * 2, total // n // args.burst * args.burst)
    modes = [
        {"name": "single", "events": events, "batch": 1, "rate": 0.0},
        {"name": "burst", "events": events, "batch": args.burst, "rate": 0.0},
    ]
    if n == 1000:
        modes.append(
            {
                "name": "paced",
                "events": int(args.rate * args.paced_seconds),
                "batch": 1,
                "rate": float(args.rate),
            }
        )
    for m in modes:
        m["pad"] = args.pad
        m["timeout"] = 60.0
        m["repeat"] = args.repeat
        m["spin"] = args.spin == "on" or (args.spin == "auto" and not m["rate"])
    return modes


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    checks = []
    index = {(r["server"], r["transport"], r["n"], r["mode"]): r for r in results}
    for (server, transport, n, mode), r in sorted(
        index.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3])
    ):
        if server != "runcast":
            continue
        ceiling = index.get(("ceiling", transport, n, mode))
        ratio = r["deliveries_per_s"] / ceiling["deliveries_per_s"] if ceiling else float("nan")
        rows.append((transport, n, mode, r, ceiling, ratio))
        if n >= 1000 and mode == "single":
            checks.append((f"{transport} N={n} single >= 0.6x ceiling", ratio >= 0.6, ratio))
        if n >= 1000 and mode == "burst":
            checks.append((f"{transport} N={n} burst > 1.0x ceiling", ratio > 1.0, ratio))
        if n == 1000 and mode == "paced":
            p99 = r["latency_p99_ms"]
            checks.append((f"{transport} N=1000 paced p99 < 20 ms", p99 < 20.0, p99))
        if transport == "sse" and mode == "single" and n >= 1000:
            kib = r["rss_per_subscriber_bytes"] / 1024
            checks.append((f"sse N={n} RSS/subscriber <= 20 KiB", kib <= 20.0, kib))
    return {"rows": rows, "checks": checks}


def print_metrics_cost(results: list[dict[str, Any]]) -> None:
    """runcast with metrics on against off, measured in the same run over the same clients."""
    index = {(r["server"], r["transport"], r["n"], r["mode"]): r for r in results}
    print(
        f"\n{'transport':<9} {'N':>6} {'mode':<7} {'off/s':>12} {'on/s':>12} {'on/off':>6} "
        f"{'off p99':>8} {'on p99':>8}"
    )
    for (server, transport, n, mode), on in sorted(index.items(), key=lambda kv: kv[0][1:]):
        off = index.get(("runcast", transport, n, mode))
        if server != "metrics" or off is None:
            continue
        print(
            f"{transport:<9} {n:>6} {mode:<7} {off['deliveries_per_s']:>12,.0f} "
            f"{on['deliveries_per_s']:>12,.0f} "
            f"{on['deliveries_per_s'] / off['deliveries_per_s']:>6.2f} "
            f"{off['latency_p99_ms']:>8.2f} {on['latency_p99_ms']:>8.2f}"
        )


def print_table(summary: dict[str, Any]) -> None:
    head = (
        f"{'transport':<9} {'N':>6} {'mode':<7} {'ceiling/s':>12} {'runcast/s':>12} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'ceil p99':>8} {'RSS/sub':>9} {'complete':>9} {'lagged':>6}"
    )
    print(head)
    print("-" * len(head))
    for transport, n, mode, r, c, ratio in summary["rows"]:
        print(
            f"{transport:<9} {n:>6} {mode:<7} "
            f"{(c['deliveries_per_s'] if c else float('nan')):>12,.0f} "
            f"{r['deliveries_per_s']:>12,.0f} {ratio:>6.2f} "
            f"{r['latency_p50_ms']:>7.2f} {r['latency_p99_ms']:>7.2f} "
            f"{(c['latency_p99_ms'] if c else float('nan')):>8.2f} "
            f"{r['rss_per_subscriber_bytes'] / 1024:>7.1f}Ki "
            f"{r['complete']:>4}/{r['n']:<4} {r.get('lagged', 0):>6}"
        )
    print()
    for name, ok, value in summary["checks"]:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({value:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 and 1,000, fewer events")
    parser.add_argument(
        "--n", type=int, nargs="*", help="subscriber counts (default 100 1000 10000)"
    )
    parser.add_argument("--transports", nargs="*", default=["sse", "ws"])
    parser.add_argument("--deliveries", type=int, default=400_000, help="per throughput mode")
    parser.add_argument("--burst", type=int, default=20, help="events per publish in burst mode")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in paced mode")
    parser.add_argument("--paced-seconds", type=float, default=3.0)
    parser.add_argument("--pad", type=int, default=200, help="filler bytes per event's data")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (best/median kept)")
    parser.add_argument(
        "--spin",
        choices=["auto", "on", "off"],
        default="auto",
        help="clients busy-poll while measuring (auto: in the throughput modes only)",
    )
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also measure runcast with its Prometheus metrics on, in the same run, and print "
        "metrics on / off",
    )
    args = parser.parse_args()
    if args.quick:
        args.n = args.n or [100, 1000]
        args.deliveries = min(args.deliveries, 200_000)
        args.paced_seconds = min(args.paced_seconds, 1.0)
        args.repeat = 1
    ns = args.n or [100, 1000, 10_000]
    hard = raise_fd_limit()
    if max(ns) + 100 > hard:
        print(f"fd hard limit {hard} is too low for N={max(ns)}", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")
    clients = [Proc(ctx, client_main) for _ in range(CLIENT_PROCS)]
    results: list[dict[str, Any]] = []
    try:
        for transport in args.transports:
            for n in ns:
                modes = build_modes(n, args)
                kinds = (
                    ("ceiling", "runcast", "metrics") if args.metrics else ("ceiling", "runcast")
                )
                for kind in kinds:
                    started = time.monotonic()
                    results.extend(run_case(ctx, clients, kind, transport, n, modes))
                    print(
                        f"  {transport} N={n} {kind}: {time.monotonic() - started:.1f}s",
                        file=sys.stderr,
                    )
    finally:
        for c in clients:
            c.stop()
    summary = summarize(results)
    print_table(summary)
    if args.metrics:
        print_metrics_cost(results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "cpus": os.cpu_count(),
                    "targets": TARGETS,
                    "results": results,
                    "checks": [
                        {"name": name, "ok": ok, "value": value}
                        for name, ok, value in summary["checks"]
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
