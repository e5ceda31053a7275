"""The recovery's poller against a real server: which answers it retries, which end it, and the
bound on each attempt and on the whole."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import web

import gateway.runs.polling as polling
from gateway.runs.polling import BACKOFF_BASE, BACKOFF_MAX, Poller
from gateway.upstream import UpstreamClient, UpstreamSettings

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scripted:
    """A server answering ``GET /v1/thing`` with ``answers`` in turn (the last one repeats)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.hits = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return await answer(request)


def status(code: int, **headers: str) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "no"}}, status=code, headers=headers)

    return answer


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'{"status":"completed"}', content_type="application/json")


async def silent(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()  # never answers; cancelled when the client goes
    raise AssertionError("unreachable")


Serve = Callable[[Scripted], Awaitable[UpstreamClient]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []
    clients: list[UpstreamClient] = []

    async def start(script: Scripted) -> UpstreamClient:
        app = web.Application()
        app.router.add_get("/v1/thing", script.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client = UpstreamClient(UpstreamSettings(base_url=f"http://127.0.0.1:{port}/v1"))
        await client.start()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "transient",
    [status(500), status(502), status(503), status(429), status(408), status(409)],
    ids=["500", "502", "503", "429", "408", "409"],
)
async def test_transient_answers_are_retried_until_one_succeeds(
    serve: Serve, transient: Answer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polling, "BACKOFF_BASE", 0.01)
    script = Scripted(transient, transient, transient, ok)
    poller = Poller(await serve(script), within=10.0, what="test")
    answer = await poller.get("/thing", limit=1024)
    assert answer is not None and answer[0] == b'{"status":"completed"}'
    assert script.hits == 4


@pytest.mark.asyncio
async def test_retry_after_is_honoured(serve: Serve) -> None:
    script = Scripted(status(429, **{"retry-after-ms": "300"}), ok)
    poller = Poller(await serve(script), within=10.0, what="test")
    started = time.monotonic()
    assert await poller.get("/thing", limit=1024) is not None
    assert time.monotonic() - started >= 0.3
    assert script.hits == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_definitive_answers_end_at_once(serve: Serve, code: int) -> None:
    script = Scripted(status(code), ok)
    poller = Poller(await serve(script), within=10.0, what="test")
    started = time.monotonic()
    assert await poller.get("/thing", limit=1024) is None
    assert script.hits == 1 and time.monotonic() - started < 1.0


@pytest.mark.asyncio
async def test_an_oversized_body_is_definitive(serve: Serve) -> None:
    script = Scripted(ok)
    poller = Poller(await serve(script), within=10.0, what="test")
    assert await poller.get("/thing", limit=4) is None
    assert script.hits == 1


@pytest.mark.asyncio
async def test_each_attempt_and_the_whole_are_bounded(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polling, "ATTEMPT_TIMEOUT", 0.2)
    script = Scripted(silent)
    poller = Poller(await serve(script), within=1.2, what="test")
    started = time.monotonic()
    assert await poller.get("/thing", limit=1024) is None
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed < 2.0
    assert script.hits >= 3  # a silent attempt was abandoned and tried again, not waited out


@pytest.mark.asyncio
async def test_refused_connections_are_retried_until_the_deadline() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = UpstreamClient(UpstreamSettings(base_url=f"http://127.0.0.1:{port}/v1"))
    await client.start()
    try:
        poller = Poller(client, within=0.8, what="test")
        started = time.monotonic()
        assert await poller.get("/thing", limit=1024) is None
        assert time.monotonic() - started >= 0.8
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_backoff_doubles_to_its_cap_with_jitter(serve: Serve) -> None:
    poller = Poller(await serve(Scripted(ok)), within=1.0, rng=random.Random(7))
    delays = [poller._backoff() for _ in range(8)]
    for n, delay in enumerate(delays):
        full = min(BACKOFF_MAX, BACKOFF_BASE * 2**n)
        assert full / 2 <= delay <= full
    assert max(delays) <= BACKOFF_MAX
