"""The serve benchmark's server processes: ``runcast mock``, ``runcast serve`` and the naive peer.

Each is a real child process started from its command line. The server under test runs alone on
CPU 0 (``taskset -c 0``); the simulator, clients and driver share the other CPU. CPU time and RSS
are read from ``/proc/<pid>/stat`` and ``/proc/<pid>/statm``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SERVER_CPU = 0
CLIENT_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def two_cpus() -> bool:
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (proc(5): stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Child:
    """A child process started from a command line, optionally pinned to one CPU."""

    def __init__(
        self, name: str, argv: list[str], cpu: int | None, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        if cpu is not None and two_cpus() and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        # a file, not a pipe: a pipe nobody reads would block a chatty server once full
        self.log = tempfile.NamedTemporaryFile(prefix="serve_bench_", suffix=".log")  # noqa: SIM115
        # the servers' configuration is their command line alone: no key or setting leaks in
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNCAST_", "OPENAI_"))}
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**clean, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _wait_healthy(child: Child, base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited: {child.output()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{child.name} not healthy after {timeout} s")


def start_mock(deltas: int, delay_ms: float) -> tuple[Child, str]:
    """``runcast mock`` on the clients' CPU; returns it and its ``/v1`` URL at once (it starts
    while the server under test does: :func:`wait_mock` before the first run)."""
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "mock", "--port", str(port)]
    argv += ["--deltas", str(deltas), "--delay-ms", str(delay_ms), "--max-runs-per-thread", "1000"]
    return Child("runcast mock", argv, CLIENT_CPU), f"http://127.0.0.1:{port}/v1"


def wait_mock(mock: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and mock.proc.poll() is None:
        if "listening on" in mock.output():
            return
        time.sleep(0.05)
    raise RuntimeError(f"runcast mock did not start: {mock.output()}")


SERVE_ENV: dict[str, str] = {}
"""Environment given to every ``runcast serve`` (``serve_bench.py --serve-env``)."""


def start_runcast(upstream: str, extra: list[str]) -> tuple[Child, str]:
    """``runcast serve`` against ``upstream``, alone on the server CPU."""
    port = free_port()
    return _start_runcast(upstream, extra, port, "runcast serve")


def _start_runcast(upstream: str, extra: list[str], port: int, name: str) -> tuple[Child, str]:
    argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--upstream", upstream]
    # no heartbeat: the subscribers do not answer WebSocket pings (and no peer sends any)
    argv += ["--subscribe-auth", "open", "--log-level", "warning", "--heartbeat", "0"]
    argv += ["--max-subscribers", "1000000", "--max-subscribers-per-channel", "1000000"]
    child = Child(name, [*argv, *extra], SERVER_CPU, SERVE_ENV)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(child, base)
    return child, base


def start_peer(upstream: str) -> tuple[Child, str]:
    """The naive aiohttp broadcaster (``_serve_peer.py``), alone on the server CPU."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "_serve_peer.py"), "--port", str(port)]
    child = Child("aiohttp peer", [*argv, "--upstream", upstream], SERVER_CPU)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(child, base)
    return child, base


def start_redis() -> tuple[Child, str]:
    """A private ``redis-server`` (no persistence) on the server CPU; returns it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="serve_bench_redis_")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = Child("redis-server", [*argv, "--dir", workdir], SERVER_CPU)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            if time.monotonic() > deadline or child.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {child.output()}") from None
            time.sleep(0.05)
    return child, f"redis://127.0.0.1:{port}/0"


def redis_info(url: str) -> dict[str, str]:
    """``INFO all`` of the Redis server at ``url`` as a flat dict (the benchmark reads
    ``used_cpu_*`` and ``cmdstat_*`` from it)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"INFO all\r\n")
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n")
        want = int(head[1:])
        while len(rest) < want + 2:
            rest += s.recv(65536)
    out = {}
    for line in rest[:want].decode().splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


def start_cluster(
    upstream: str, extra: list[str], redis_url: str, nodes: int = 2
) -> list[tuple[Child, str]]:
    """``nodes`` ``runcast serve --broker redis://`` processes sharing ``redis_url``, all on the
    server CPU (with the Redis server: one core in all, as memory mode's one process)."""
    secret = secrets.token_hex(16)
    out = []
    for i in range(nodes):
        argv = [*extra, "--broker", redis_url, "--node-id", f"bench-{i}", "--token-secret", secret]
        out.append(_start_runcast(upstream, argv, free_port(), f"runcast serve (node {i})"))
    return out
