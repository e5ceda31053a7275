"""Fixtures of the upstream client tests: a scripted aiohttp upstream, raw TCP servers, a client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from gateway.upstream import UpstreamClient

from .servers import (
    SHORT_TIMEOUTS,
    FakeUpstream,
    RawServer,
    RawServerFactory,
    Script,
    make_settings,
)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(make_settings(upstream.base_url)) as c:
        yield c


@pytest_asyncio.fixture
async def short_client(upstream: FakeUpstream) -> AsyncIterator[UpstreamClient]:
    """A client whose first-byte and idle timeouts are 0.3 s (the timeout tests)."""
    async with UpstreamClient(make_settings(upstream.base_url, **SHORT_TIMEOUTS)) as c:
        yield c


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[RawServerFactory]:
    servers: list[RawServer] = []

    async def make(script: Script) -> RawServer:
        server = RawServer(script)
        await server.start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            await server.aclose()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound then released; connection attempts are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
