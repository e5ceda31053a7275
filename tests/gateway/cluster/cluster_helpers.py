"""Real processes of a cluster: ``runcast mock`` and ``runcast serve`` nodes on one Redis.

Each process's output is read to its end by a task of the :class:`Cluster` (a pipe left unread
would block a chatty node); every process still running when the cluster closes is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass, field
from types import TracebackType

from http_helpers import WAIT, clean_environ
from redis_server import RedisServer

SECRET = "cluster-secret-with-at-least-32-bytes!"
API_KEY = "sk-caller"


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    url: str
    lines: list[str] = field(default_factory=list)


class Cluster:
    """``await mock(...)``, then ``await node(name, ...)`` for each node; ``async with`` owns
    the processes and their readers."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.upstream = ""
        self._stack = contextlib.AsyncExitStack()
        self._readers: list[asyncio.Task[None]] = []
        self._processes: list[Process] = []

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for started in reversed(self._processes):
            if started.proc.returncode is None:
                started.proc.kill()
            await started.proc.wait()
        for reader in self._readers:
            reader.cancel()
        if self._readers:
            await asyncio.wait(self._readers)

    async def _start(self, *argv: str, stream: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *argv,
            stdout=asyncio.subprocess.PIPE if stream == "stdout" else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if stream == "stderr" else asyncio.subprocess.DEVNULL,
            env=clean_environ(),
        )
        pipe = proc.stdout if stream == "stdout" else proc.stderr
        assert pipe is not None
        lines: list[str] = []
        listening = asyncio.get_running_loop().create_future()

        async def read() -> None:
            while line := (await pipe.readline()).decode():
                lines.append(line)
                if not listening.done() and (found := re.search(r"listening on (\S+)", line)):
                    listening.set_result(found.group(1))
            if not listening.done():
                listening.set_exception(AssertionError("".join(lines)))

        self._readers.append(asyncio.create_task(read()))
        started = Process(proc, "", lines)
        self._processes.append(started)
        async with asyncio.timeout(WAIT):
            started.url = (await listening).rstrip("/")
        return started

    async def mock(self, *argv: str) -> Process:
        """Start ``runcast mock *argv``; later nodes use it as their upstream."""
        started = await self._start("mock", "--port", "0", *argv, stream="stdout")
        base = started.url
        self.upstream = base if base.endswith("/v1") else f"{base}/v1"
        return started

    def use_upstream(self, url: str) -> None:
        """Point later nodes at ``url`` (an in-process simulator) instead of a mock process."""
        self.upstream = url

    async def node(self, name: str, *argv: str) -> Process:
        """Start a ``runcast serve`` node named ``name`` on the cluster's Redis and upstream."""
        return await self._start(
            "serve",
            "--port",
            "0",
            "--upstream",
            self.upstream,
            "--broker",
            self.redis.url,
            "--node-id",
            name,
            "--token-secret",
            SECRET,
            "--api-key",
            API_KEY,
            *argv,
            stream="stderr",
        )
