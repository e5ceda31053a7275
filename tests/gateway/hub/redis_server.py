"""A private ``redis-server`` for tests: a free port on 127.0.0.1, no persistence, a tmp dir."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``start()`` / ``stop()`` a server on a fixed port (so a restart keeps its address)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_once = False

    def start(self) -> None:
        """Start the server and wait until it answers. The port was free when chosen, but any
        process may take it meanwhile (another test run, a benchmark's server, a connection's
        local port): then our server exits at once and whoever holds the port would answer, so
        only an answer from our own process counts. A first start moves to another port; a
        restart keeps its address and waits for the port to come free."""
        for _ in range(50):
            if self._start_once():
                break
            if self.started_once:
                time.sleep(0.1)
            else:
                self.port = free_port()
                self.url = f"redis://127.0.0.1:{self.port}/0"
        else:
            raise RuntimeError(f"redis-server could not listen on 127.0.0.1:{self.port}")
        self.started_once = True
        # A dump left by stop(save=True) is loaded now; the next plain start begins empty.
        (self.workdir / "dump.rdb").unlink(missing_ok=True)

    def _start_once(self) -> bool:
        process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        try:
            while process.poll() is None:
                try:
                    if client.info("server")["process_id"] == process.pid:
                        self.process = process
                        return True
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait(10)
                    raise RuntimeError(f"redis-server on port {self.port} did not answer")
                time.sleep(0.02)
            return False  # it exited: the port is someone else's
        finally:
            client.close()

    def flush(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=5)
        client.flushall()
        client.close()

    def stop(self, *, save: bool = False) -> None:
        """Kill the server (what it held is lost), or with ``save`` shut it down saving its data,
        which the next :meth:`start` loads: Redis unreachable for a while, then back as it was."""
        if self.process is not None:
            if save:
                # No retries: the server closing the connection is the expected answer (redis-py
                # 8 would retry it for seconds against a closed port).
                client = redis.Redis(port=self.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
                client.shutdown(save=True)
                client.close()
            else:
                self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and commands are read later, replies do not come."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The body of a ``redis_server`` fixture (each test folder picks its own scope): a private
    server, started, then stopped."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def emptied(server: RedisServer) -> Iterator[RedisServer]:
    """The body of a per-test fixture over a shared server: flushed before the test, running
    again after one that stopped or paused it."""
    server.flush()
    yield server
    if server.process is None:
        server.start()
    else:
        server.resume()  # SIGCONT: harmless when it was not paused
