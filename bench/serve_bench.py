"""Black-box benchmark of ``runcast serve`` as a process, against a naive aiohttp peer in the same run.

For each N, mode (``paced``: the upstream sends 200 text deltas/s; ``burst``: as fast as it can,
``--delay-ms 0``) and server:

- a ``runcast mock`` upstream starts with the mode's delta count and pacing (clients' CPU), then
  a fresh server under test per case, alone on CPU 0 (``taskset -c 0``): ``runcast serve`` or the
  peer (``_serve_peer.py``: aiohttp, one asyncio.Queue per subscriber, one write per event each);
- per transport (SSE, WebSocket): the official ``openai`` SDK creates an assistant and a thread,
  N subscribers (split over two client processes on CPU 1) subscribe to
  ``/streams/threads/{thread_id}`` (connect time: first attempt to the last one answered); the
  server's RSS growth / N is the RSS per idle subscriber;
- the SDK (the creator, on CPU 1 too) streams one run; every delivery is checked by seq (lost and
  duplicated must be 0) and timed with CLOCK_MONOTONIC (one clock for all processes) against the
  first receipt of that event by any subscriber: p50/p99/max latency; the creator's lag behind
  that first receipt, when the bytes of its copy arrive (the SDK's raw streaming response; the
  run's seq and the fresh thread channel's are the same numbers); the longest
  silence any subscriber saw mid-run (stall); deliveries/s from the first receipt of the first
  event to the last delivery; server CPU (cores) over the run, from ``/proc/<pid>/stat``;
- the subscribers leave; 3 s later the server's RSS over its level before they came.

Other servers in the same run, on the same clients:

- ``nchan`` (nginx with ``libnginx-mod-nchan``, one process on CPU 0; ``_serve_nchan.py``), when
  installed, else a line says it was skipped: a publisher on the clients' CPU streams the run
  from the simulator and publishes each event as it arrives; no creator copy;
- ``redis`` (``--server redis|all``): two ``runcast serve --broker redis://`` nodes and a private
  ``redis-server``, all on CPU 0 (one core in all, as memory mode), the subscribers of one client
  process on each node, the creator on the first; the report adds the broker round trips and the
  Redis scripts per published event and Redis's CPU.

The client processes (``--clients``) are native by default: ``bench/native/subscribers.c``
(C, epoll), compiled on demand with ``cc -O2`` into ``~/.cache/runcast-bench``
(``_serve_native.py``); without a C compiler, or with ``--clients python``, they are
``_serve_clients.py`` (asyncio protocols on uvloop), which do the same work but saturate their
core at N = 1,000 paced, so that their backlog, not the server, sets the latencies. The report
says which were used.

For runcast the server's own fan-out time (``runcast_delivery_lag_seconds`` from ``/metrics``:
from an upstream read to its frames in every subscriber's buffer) is printed beside the
client-side latency, which adds the kernel and the clients' CPU to it.
Everything shares the machine: on a loaded 2-core host the figures swing; compare the ratios.

    python bench/serve_bench.py [--n 1000 5000 10000] [--transport sse|ws|both]
        [--mode paced|burst|both] [--server runcast|peer|redis|nchan|both|all] [--quick]
        [--clients native|python] [--serve-arg ARG] [--serve-env KEY=VALUE] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import urllib.request
import warnings
from array import array
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serve_clients import client_main
from _serve_creator import sdk_setup, sdk_stream
from _serve_native import NativeProc, build, compiler
from _serve_nchan import available as nchan_missing
from _serve_nchan import publish_run, start_nchan
from _serve_procs import (
    CLIENT_CPU,
    SERVE_ENV,
    Child,
    cpu_seconds,
    redis_info,
    start_cluster,
    start_mock,
    start_peer,
    start_redis,
    start_runcast,
    two_cpus,
    wait_mock,
)
from _serve_report import KINDS, bucket_quantile, checks, percentiles, print_table

CLIENT_PROCS = 2
PACED_DELAY_MS = 5.0  # 200 deltas/s


class Proc:
    """A child process driven over two one-way pipes."""

    def __init__(self, ctx: Any, target: Callable[..., None], *args: Any) -> None:
        cmd_read, self.cmd = ctx.Pipe(duplex=False)
        self.answers, answer_write = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(cmd_read, answer_write, *args), daemon=True)
        self.proc.start()
        cmd_read.close()
        answer_write.close()

    def send(self, *cmd: Any) -> None:
        self.cmd.send(cmd)

    def recv(self, timeout: float) -> Any:
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


Client = Proc | NativeProc


def call_all(clients: list[Client], timeout: float, *cmds: tuple[Any, ...]) -> list[Any]:
    for c, cmd in zip(clients, cmds, strict=True):
        c.send(*cmd)
    return [c.recv(timeout) for c in clients]


# -- one case -----------------------------------------------------------------------------------


class Servers:
    """The server side of one case: one process (runcast, the peer) or Redis-mode nodes sharing a
    ``redis-server``; the creator uses the first, client process i subscribes through ``i % n``."""

    def __init__(self, nodes: list[tuple[Child, str]], redis: tuple[Child, str] | None = None):
        self.children = [c for c, _ in nodes]
        self.bases = [b for _, b in nodes]
        self.redis = redis

    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds() for c in self.children)

    def rss_bytes(self) -> int:
        return sum(c.rss_bytes() for c in self.children)

    def _metrics(self) -> list[str]:
        """Every node's ``/metrics`` lines (none for a server without them: the peer)."""
        lines: list[str] = []
        for base in self.bases:
            try:
                with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                    lines += r.read().decode().splitlines()
            except OSError:
                return []
        return lines

    def broker_round_trips(self) -> int:
        """``runcast_broker_round_trips`` summed over the nodes (0 for a non-runcast server)."""
        return sum(
            int(float(line.split()[-1]))
            for line in self._metrics()
            if line.startswith("runcast_broker_round_trips")
        )

    def fanout_buckets(self) -> Counter[float]:
        """The server's own ``runcast_delivery_lag_seconds`` histogram (cumulative counts by
        upper bound, summed over the nodes): from an upstream read's arrival to its frames in
        every subscriber's buffer, one read in 16 sampled."""
        out: Counter[float] = Counter()
        for line in self._metrics():
            if line.startswith("runcast_delivery_lag_seconds_bucket"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[float("inf") if le == "+Inf" else float(le)] += int(float(line.split()[-1]))
        return out

    def redis_stats(self) -> tuple[float, int]:
        """The Redis server's CPU seconds so far and its EVALSHA calls (0, 0 without one)."""
        if self.redis is None:
            return 0.0, 0
        info = redis_info(self.redis[1])
        calls = info.get("cmdstat_evalsha", "calls=0").split(",")[0].split("=")[1]
        return self.redis[0].cpu_seconds(), int(calls)

    def stop(self) -> None:
        for c in self.children:
            c.stop()
        if self.redis is not None:
            self.redis[0].stop()


def run_case(
    clients: list[Client],
    servers: Servers,
    kind: str,
    transport: str,
    case: dict[str, Any],
    upstream: str,
) -> dict[str, Any]:
    n, mode = case["n"], case["mode"]
    base = servers.bases[0]
    # nchan is no gateway: the run is set up and streamed from the simulator by its publisher
    assistant_id, thread_id = sdk_setup(upstream.removesuffix("/v1") if kind == "nchan" else base)

    def url(b: str) -> str:
        return (
            f"{b.replace('http', 'ws', 1) if transport == 'ws' else b}/streams/threads/{thread_id}"
        )

    rss0 = servers.rss_bytes()
    per = [n // CLIENT_PROCS + (1 if i < n % CLIENT_PROCS else 0) for i in range(CLIENT_PROCS)]
    connect_timeout = 120.0
    conns = call_all(
        clients,
        connect_timeout + 30,
        *(
            (
                "connect",
                url(servers.bases[i % len(servers.bases)]),
                transport,
                k,
                connect_timeout,
                "data" if kind == "nchan" else "id",
            )
            for i, k in enumerate(per)
        ),
    )
    ready = sum(c["ready"] for c in conns)
    connect_s = (max(c["end_ns"] for c in conns) - min(c["start_ns"] for c in conns)) / 1e9
    time.sleep(min(0.5, case["settle"]))
    rss_idle = servers.rss_bytes()
    call_all(clients, 30, *(("arm", 30_000) for _ in clients))
    cpu0 = servers.cpu_seconds()
    trips0, (redis_cpu0, evalsha0) = servers.broker_round_trips(), servers.redis_stats()
    fanout0 = servers.fanout_buckets()
    client_cpu0 = sum(cpu_seconds(c.proc.pid) for c in clients)
    t0 = time.monotonic_ns()
    if kind == "nchan":
        final_seq, creator = asyncio.run(publish_run(upstream, base, assistant_id, thread_id))
    else:
        final_seq, creator = asyncio.run(sdk_stream(base, assistant_id, thread_id))
    waits = call_all(clients, 400, *(("wait", final_seq, 300.0) for _ in clients))
    t1 = time.monotonic_ns()
    cpu = servers.cpu_seconds() - cpu0
    trips = servers.broker_round_trips() - trips0
    fanout = servers.fanout_buckets()
    fanout.subtract(fanout0)
    redis_cpu1, evalsha1 = servers.redis_stats()
    redis_cpu, evalsha = redis_cpu1 - redis_cpu0, evalsha1 - evalsha0
    client_cpu = sum(cpu_seconds(c.proc.pid) for c in clients) - client_cpu0
    first = array("q", bytes(8 * (final_seq + 1)))
    for w in waits:
        table = array("q")
        table.frombytes(w["first_receipt"])
        for s in range(1, min(len(table), final_seq + 1)):
            if table[s] and (not first[s] or table[s] < first[s]):
                first[s] = table[s]
    lats = call_all(clients, 300, *(("latency", first.tobytes()) for _ in clients))
    hist: Counter[int] = Counter()
    for lat in lats:
        hist.update(lat["hist"])
    p50, p99 = percentiles(hist, (0.50, 0.99))
    lags = sorted(
        max(0, t - first[seq]) for seq, t in creator.items() if seq <= final_seq and first[seq]
    )
    deliveries = sum(w["deliveries"] for w in waits)
    start = first[1] or t0
    window = max(1, max(w["last_ns"] for w in waits) - start) / 1e9
    call_all(clients, 120, *(("close",) for _ in clients))
    time.sleep(case["settle"])
    rss_left = servers.rss_bytes()
    return {
        "server": kind,
        "transport": transport,
        "n": n,
        "mode": mode,
        "deltas": case["deltas"],
        "connected": ready,
        "connect_failures": sum(c["failures"] for c in conns),
        "connect_errors": [e for c in conns for e in c["failed"]][:5],
        "connect_s": connect_s,
        "events": final_seq,
        "creator_events": final_seq,
        "creator_numbered": len(creator),
        "deliveries": deliveries,
        "expected_deliveries": ready * final_seq,
        "lost": sum(w["lost"] for w in waits),
        "duplicates": sum(w["duplicates"] for w in waits),
        "complete": sum(w["complete"] for w in waits),
        "cut": sum(w["cut"] for w in waits),
        "deliveries_per_s": deliveries / window,
        "window_s": window,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "latency_max_ms": max(lat["max_ns"] for lat in lats) / 1e6,
        "creator_lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] / 1e6 if lags else float("nan"),
        "creator_lag_max_ms": lags[-1] / 1e6 if lags else float("nan"),
        "stall_max_ms": max(w["stall_ns"] for w in waits) / 1e6,
        "server_cpu_cores": cpu / max(1e-9, (t1 - t0) / 1e9),
        "nodes": len(servers.bases),
        # the server's own view (its metric's bucket bounds): how long publishing a read took
        # until every subscriber's buffer held it; the client-side latency adds the kernel, the
        # clients' CPU and their backlog to it
        "server_fanout_p50_ms": bucket_quantile(fanout, 0.50) * 1e3,
        "server_fanout_p99_ms": bucket_quantile(fanout, 0.99) * 1e3,
        # Redis mode: the nodes' broker requests and the scripts Redis ran (one per channel per
        # published batch), per event the run published; the Redis server's CPU over the run
        "broker_round_trips_per_event": trips / max(1, final_seq),
        "evalsha_per_event": evalsha / max(1, final_seq),
        "redis_cpu_cores": redis_cpu / max(1e-9, (t1 - t0) / 1e9),
        # both client processes together, on their one CPU (shared with the simulator and the
        # creator): near 1.0, the clients set the pace. The native clients' time is nearly all
        # kernel (loopback TCP receive), whose share each side is charged for shifts with load
        "client_cpu_cores": client_cpu / max(1e-9, (t1 - t0) / 1e9),
        "rss_idle_per_subscriber_bytes": (rss_idle - rss0) / max(1, ready),
        "rss_idle_growth_bytes": rss_idle - rss0,
        "rss_after_leave_growth_bytes": rss_left - rss0,
    }


def run_server(
    clients: list[Client],
    kind: str,
    mock: Child,
    upstream: str,
    case: dict[str, Any],
    transport: str,
    extra: list[str],
) -> dict[str, Any]:
    """One case on fresh server processes, so that RSS and CPU are this case's alone."""
    if kind == "runcast":
        servers = Servers([start_runcast(upstream, extra)])
    elif kind == "peer":
        servers = Servers([start_peer(upstream)])
    elif kind == "nchan":
        servers = Servers([start_nchan()])
    else:
        redis = start_redis()
        try:
            servers = Servers(start_cluster(upstream, extra, redis[1]), redis)
        except BaseException:
            redis[0].stop()
            raise
    wait_mock(mock)
    try:
        started = time.monotonic()
        r = run_case(clients, servers, kind, transport, case, upstream)
    finally:
        servers.stop()
    print(
        f"  {transport} N={r['n']} {r['mode']} {kind}: {r['deliveries_per_s']:,.0f}/s, "
        f"p99 {r['latency_p99_ms']:.1f} ms, lost {r['lost']}, dup {r['duplicates']}, "
        f"clients' CPU {r['client_cpu_cores']:.2f} ({time.monotonic() - started:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f})",
        file=sys.stderr,
        flush=True,
    )
    return r


# -- output ---------------------------------------------------------------------------------------


def deltas_for(mode: str, n: int, args: argparse.Namespace) -> int:
    if mode == "paced":
        return args.paced_events or max(100, min(1000, 1_000_000 // n))
    return args.burst_events or max(200, min(20_000, 4_000_000 // n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, nargs="*", help="subscriber counts (default 1000 5000 10000)"
    )
    parser.add_argument("--transport", choices=["sse", "ws", "both"], default="both")
    parser.add_argument("--mode", choices=["paced", "burst", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="N = 1,000 only, short runs")
    parser.add_argument(
        "--paced-events", type=int, help="text deltas of the paced run (default by N)"
    )
    parser.add_argument(
        "--burst-events", type=int, help="text deltas of the burst run (default by N)"
    )
    parser.add_argument(
        "--server", choices=["runcast", "peer", "redis", "nchan", "both", "all"], default="both",
        help="both = runcast, the peer and nchan (when installed); redis = two runcast nodes on a "
        "private redis-server (subscribers split over them); all = the four",
    )  # fmt: skip
    parser.add_argument(
        "--serve-arg", action="append", default=[], metavar="ARG",
        help="extra argument for runcast serve (repeatable, e.g. --serve-arg=--coalesce-ms=2)",
    )  # fmt: skip
    parser.add_argument(
        "--serve-env", action="append", default=[], metavar="KEY=VALUE",
        help="environment for runcast serve (repeatable, e.g. --serve-env PYTHONMALLOC=malloc)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds after the subscribers left, then RSS"
    )
    parser.add_argument(
        "--clients", choices=["native", "python"],
        help="the subscriber client processes: native (bench/native/subscribers.c, the default "
        "when a C compiler is found) or python (_serve_clients.py, uvloop)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args()
    SERVE_ENV.update(item.split("=", 1) for item in args.serve_env)
    if args.quick:
        args.n = args.n or [1000]
        args.paced_events = args.paced_events or 200
        args.burst_events = args.burst_events or 1000
    ns = args.n or [1000, 5000, 10_000]
    transports = ["sse", "ws"] if args.transport == "both" else [args.transport]
    modes = ["paced", "burst"] if args.mode == "both" else [args.mode]
    kinds = {"both": ["runcast", "peer", "nchan"], "all": list(KINDS)}.get(
        args.server, [args.server]
    )
    skipped = nchan_missing()
    if skipped is not None and "nchan" in kinds:
        if args.server == "nchan":
            print(f"nchan: {skipped}", file=sys.stderr)
            return 2
        kinds.remove("nchan")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(ns) // CLIENT_PROCS + 200 > hard:
        print(f"open-file hard limit {hard} is too low for N={max(ns)}", file=sys.stderr)
        return 2
    if two_cpus():
        os.sched_setaffinity(0, {CLIENT_CPU})
    else:
        print("one CPU: server and clients share it (figures not comparable)", file=sys.stderr)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    client_kind = args.clients or ("native" if compiler() else "python")
    if args.clients is None and client_kind == "python":
        print("clients: python (no C compiler found for the native ones)", file=sys.stderr)
    binary = None
    if client_kind == "native":
        try:
            binary = build()
        except (OSError, RuntimeError) as exc:
            if args.clients == "native":
                print(f"native clients: {exc}", file=sys.stderr)
                return 2
            print(f"clients: python (the native ones did not build: {exc})", file=sys.stderr)
            client_kind = "python"
    cpu = CLIENT_CPU if two_cpus() else None
    clients: list[Client]
    if binary is not None:
        clients = [NativeProc(binary, cpu) for _ in range(CLIENT_PROCS)]
    else:
        ctx = mp.get_context("spawn")
        clients = [Proc(ctx, client_main, cpu) for _ in range(CLIENT_PROCS)]
    results: list[dict[str, Any]] = []
    import openai  # noqa: F401  (imported while the clients start, not during the first case)

    try:
        for n in ns:
            for mode in modes:
                case = {"n": n, "mode": mode, "settle": args.settle}
                case["deltas"] = deltas_for(mode, n, args)
                delay = PACED_DELAY_MS if mode == "paced" else 0.0
                mock, upstream = start_mock(case["deltas"], delay)
                try:
                    for transport in transports:
                        for kind in kinds:
                            r = run_server(
                                clients, kind, mock, upstream, case, transport, args.serve_arg
                            )
                            results.append({**r, "clients": client_kind})
                finally:
                    mock.stop()
    finally:
        for c in clients:
            c.stop()
    if "nchan" not in kinds:
        print(f"nchan: skipped ({skipped or 'not asked for'})")
    load = os.getloadavg()
    print(
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print_table(results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join(sys.argv),
                    "python": sys.version.split()[0],
                    "cpus": os.cpu_count(),
                    "load_avg_at_end": load,
                    "clients": client_kind,
                    "results": results,
                    "checks": [{"name": a, "ok": b, "value": c} for a, b, c in checks(results)],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
