"""Subscribers that come and go: what the gateway's memory does after they leave, cycle after cycle.

The gateway (``create_app``, memory broker, no heartbeat) serves in this process on uvloop; a
client process opens N SSE subscribers of one thread channel at once, holds them, then closes
them all; that is one cycle, repeated ``--cycles`` times. After each phase the benchmark prints
the process's RSS over its level before the first cycle and the live Python heap
(``tracemalloc``'s traced bytes, with ``--trace``: slower, and its own bookkeeping adds to RSS).

What it tells apart: memory the gateway still references after the subscribers left (the traced
heap stays high: a leak), from memory the allocator keeps for reuse (the heap falls back but RSS
does not: CPython's small-object arenas are returned to the system only once every object in them
is freed, so a few survivors scattered over them keep them mapped). The latter is bounded if
each cycle's peak stays at the first one's: the kept memory is reused by the next subscribers.

    python bench/leave_bench.py [--n 5000] [--cycles 4] [--settle 3] [--trace] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import socket
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.http.app import create_app
from gateway.hub.broker import HubSettings
from gateway.settings import Settings

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20

# The client: N raw sockets, each a GET of the channel; "connected" once every response head
# arrived; closes them all on the first line of stdin and exits on the second.
CLIENT = r"""
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
port, n = int(sys.argv[1]), int(sys.argv[2])
request = (
    b"GET /streams/threads/thread_leave HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Accept: text/event-stream\r\n\r\n"
)
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    socks.append(s)
for s in socks:
    if not s.recv(4096).startswith(b"HTTP/1.1 200"):
        raise SystemExit("a subscriber was refused")
print("connected", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
"""


def rss_bytes() -> int:
    return int(Path(f"/proc/{os.getpid()}/statm").read_text().split()[1]) * PAGE


def traced() -> float:
    return tracemalloc.get_traced_memory()[0] / MIB if tracemalloc.is_tracing() else float("nan")


async def _line(stream: asyncio.StreamReader, want: bytes) -> None:
    line = await asyncio.wait_for(stream.readline(), 120)
    if line.strip() != want:
        raise RuntimeError(f"client said {line!r}, expected {want!r}")


async def run(n: int, cycles: int, settle: float, trace: bool) -> list[dict[str, Any]]:
    hub = HubSettings(
        heartbeat_interval=0, max_subscribers=n + 100, max_subscribers_per_channel=n + 100
    )
    runner = web.AppRunner(create_app(Settings(subscribe_auth="open", hub=hub)))
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=min(n, 65535))
    await site.start()
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0.5)
        gc.collect()
        base = rss_bytes()
        if trace:
            tracemalloc.start()
        for cycle in range(1, cycles + 1):
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, str(port), str(n),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert client.stdin is not None and client.stdout is not None
            try:
                started = time.monotonic()
                await _line(client.stdout, b"connected")
                connect_s = time.monotonic() - started
                await asyncio.sleep(0.5)
                held = (rss_bytes() - base) / MIB, traced()
                client.stdin.write(b"\n")
                await client.stdin.drain()
                await _line(client.stdout, b"closed")
                await asyncio.wait_for(client.wait(), 30)
            finally:
                if client.returncode is None:
                    client.kill()
                    await client.wait()
            # the hub's housekeeping sweeps every second and trims the heap after a large drop
            await asyncio.sleep(settle)
            gc.collect()
            row = {
                "cycle": cycle,
                "connect_s": connect_s,
                "held_rss_mib": held[0],
                "held_heap_mib": held[1],
                "left_rss_mib": (rss_bytes() - base) / MIB,
                "left_heap_mib": traced(),
            }
            rows.append(row)
            heap = (
                f" (live heap {row['held_heap_mib']:.1f} -> {row['left_heap_mib']:.1f} MiB)"
                if trace
                else ""
            )
            print(
                f"cycle {cycle}: {n:,} subscribers held RSS +{row['held_rss_mib']:.1f} MiB, "
                f"{settle:g} s after they left +{row['left_rss_mib']:.1f} MiB{heap}",
                flush=True,
            )
    finally:
        tracemalloc.stop()
        await runner.cleanup()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="subscribers per cycle")
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after they left")
    parser.add_argument("--trace", action="store_true", help="also the live Python heap")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 200 > hard:
        print(f"open-file hard limit {hard} is too low for N={args.n}", file=sys.stderr)
        return 2
    rows = uvloop.run(run(args.n, args.cycles, args.settle, args.trace))
    peak = max(r["held_rss_mib"] for r in rows)
    print(
        f"peak RSS +{peak:.1f} MiB (first cycle +{rows[0]['held_rss_mib']:.1f}); kept after the "
        f"last cycle +{rows[-1]['left_rss_mib']:.1f} MiB = "
        f"{rows[-1]['left_rss_mib'] / max(peak, 1e-9):.0%} of the peak"
    )
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "settle": args.settle, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
