"""Helpers for the web tests: runcast with its embedded simulator on 127.0.0.1, and a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from gateway.http.app import create_app
from gateway.http.runner import start_runner
from gateway.mock import MockSettings
from gateway.settings import Settings
from gateway.tools import ToolRegistry

WAIT = 20.0
"""Upper bound for anything a test waits for."""

SECRET = "web-test-secret-with-at-least-32-bytes!"


@dataclass
class Runcast:
    url: str
    app: web.Application


@contextlib.asynccontextmanager
async def runcast(
    sim: dict[str, Any] | None = None, tools: ToolRegistry | None = None, **overrides: Any
) -> AsyncIterator[Runcast]:
    """runcast on a free port; without ``upstream`` it embeds the simulator (demo runs allowed)."""
    values: dict[str, Any] = {"port": 0, "shutdown_timeout": 2.0, "token_secret": SECRET}
    settings = Settings(simulator=MockSettings(**(sim or {})), **{**values, **overrides})
    app = create_app(settings, tools=tools)
    runner, url = await start_runner(app, "127.0.0.1", 0)
    try:
        yield Runcast(url=url, app=app)
    finally:
        await runner.cleanup()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`sever` aborts every open connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._pipes: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.sever()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.wait(self._pipes)
        await self._server.wait_closed()

    def sever(self) -> int:
        """Abort every connection through the proxy, both sides, as a network failure would."""
        cut = 0
        for transport in list(self._transports):
            if not transport.is_closing():
                transport.abort()
                cut += 1
        self._transports.clear()
        return cut

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.update((writer.transport, up_writer.transport))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json()
