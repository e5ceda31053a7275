"""Connection storm and idle memory of a real ``runcast serve``: N SSE subscribers at once.

Starts ``runcast serve`` (embedded simulator, open subscriptions) as its own process with the
given ``--backlog`` values, then opens N connections to one thread stream all at once from this
process (uvloop, raw protocols) and reports how long it took until every one of them had its
``200`` head or failed, how many needed more than a second (a SYN retransmission: the accept
queue was full) and how many failed (reset after too many retransmissions). It also reads the server's RSS before, with the N
subscribers connected and idle, and ``LEFT_FOR`` seconds after all of them have left. The listen overflows the kernel counted meanwhile (``nstat TcpExtListenOverflows``,
system-wide) are shown when ``nstat`` is installed.

Run: ``python bench/connect_bench.py [-n 1000 -n 10000] [--backlog 128 --backlog 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import psutil
import uvloop

LEFT_FOR = 3.0
"""Seconds after every subscriber has left when the server's RSS is read again."""


class _Subscriber(asyncio.Protocol):
    __slots__ = ("head", "ready", "request", "started")

    def __init__(self, request: bytes, ready: asyncio.Future[float], started: float) -> None:
        self.request = request
        self.ready = ready
        self.started = started
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(self.head[:120].decode("latin-1")))
            else:
                self.ready.set_result(time.perf_counter() - self.started)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the head"))


def _overflows() -> int | None:
    if shutil.which("nstat") is None:
        return None
    out = subprocess.run(
        ["nstat", "-az", "TcpExtListenOverflows"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"TcpExtListenOverflows\s+(\d+)", out)
    return int(found.group(1)) if found else None


async def _storm(
    host: str, port: int, n: int, server: psutil.Process
) -> tuple[float, list[float], int, tuple[int, int, int]]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /streams/threads/storm_{n} HTTP/1.1\r\nHost: {host}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    futures: list[asyncio.Future[float]] = []
    connects = []
    for _ in range(n):
        ready: asyncio.Future[float] = loop.create_future()
        futures.append(ready)
        connects.append(
            loop.create_connection(lambda r=ready: _Subscriber(request, r, started), host, port)
        )
    rss_before = server.memory_info().rss
    opened = await asyncio.gather(*connects, return_exceptions=True)
    results = await asyncio.gather(*futures, return_exceptions=True)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)
    rss_idle = server.memory_info().rss
    for item in opened:
        if isinstance(item, tuple):
            item[0].close()
    await asyncio.sleep(LEFT_FOR)
    rss_left = server.memory_info().rss
    times = sorted(t for t in results if isinstance(t, float))
    return elapsed, times, len(results) - len(times), (rss_before, rss_idle, rss_left)


def _serve(backlog: int) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--backlog", str(backlog)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("RUNCAST_", "OPENAI_"))},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening on http://(\S+):(\d+)", line)
        if found:
            return proc, found.group(1), int(found.group(2))
    raise RuntimeError("runcast serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, action="append", help="subscribers (1000, 10000)")
    parser.add_argument(
        "--backlog", type=int, action="append", help="--backlog values (128 and 0 = somaxconn)"
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for backlog in args.backlog or [128, 0]:
        for n in args.n or [1000, 10000]:
            for _ in range(args.repeat):
                proc, host, port = _serve(backlog)
                try:
                    before = _overflows()
                    elapsed, times, failed, rss = uvloop.run(
                        _storm(host, port, n, psutil.Process(proc.pid))
                    )
                    after = _overflows()
                finally:
                    proc.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                    proc.kill()
                slow = sum(1 for t in times if t > 1.0)
                overflows = "n/a" if before is None or after is None else str(after - before)
                print(
                    f"backlog {backlog or 'somaxconn':>9}  N {n:>6,}  all connected in "
                    f"{elapsed:6.2f} s  p50 {times[len(times) // 2] * 1e3:7.1f} ms  "
                    f"p99 {times[int(len(times) * 0.99)] * 1e3:7.1f} ms  >1 s: {slow:>5}  "
                    f"failed: {failed}  listen overflows: {overflows}",
                    flush=True,
                )
                grown, kept = rss[1] - rss[0], rss[2] - rss[0]
                print(
                    f"    RSS {rss[0] / 2**20:.1f} MiB before, +{grown / 2**20:.1f} MiB with N idle "
                    f"({grown / n / 1024:.1f} KiB each), +{kept / 2**20:.1f} MiB still held "
                    f"{LEFT_FOR:g} s after they left",
                    flush=True,
                )


if __name__ == "__main__":
    main()
