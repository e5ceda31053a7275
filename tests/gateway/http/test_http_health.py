"""``/healthz`` and ``/readyz`` on a real gateway: upstream down then up, draining, a component's
own check (the hook a networked broker fills)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_helpers import WAIT, StartGateway, closed_port

from gateway.http.health import READINESS, UpstreamProbe
from gateway.http.state import DRAIN


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        assert response.headers["Cache-Control"] == "no-store"
        return response.status, await response.json()


async def _until(session: aiohttp.ClientSession, url: str, status: int) -> Any:
    async with asyncio.timeout(WAIT):
        while True:
            got, body = await _get(session, url)
            if got == status:
                return body
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_healthz_is_liveness_only_and_readyz_ready_with_a_live_upstream(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(readiness_interval=0.1)
    assert await _get(session, f"{gateway.url}/healthz") == (200, {"status": "ok"})
    assert await _until(session, f"{gateway.url}/readyz", 200) == {"status": "ready"}


@pytest.mark.asyncio
async def test_readyz_is_503_while_the_upstream_is_unreachable(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    port = closed_port()
    gateway = await start_gateway(
        upstream_url=f"http://127.0.0.1:{port}/v1", readiness_interval=0.1
    )
    body = await _until(session, f"{gateway.url}/readyz", 503)
    assert body["status"] == "unavailable"
    assert body["checks"]["upstream"].startswith("upstream unreachable")
    assert body["reason"] == body["checks"]["upstream"]
    assert str(port) not in body["reason"]
    assert (await _get(session, f"{gateway.url}/healthz"))[0] == 200

    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        assert await _until(session, f"{gateway.url}/readyz", 200) == {"status": "ready"}
    finally:
        await runner.cleanup()
    assert (await _until(session, f"{gateway.url}/readyz", 503))["checks"].keys() == {"upstream"}


@pytest.mark.asyncio
async def test_readyz_is_503_while_draining_and_names_a_components_check(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(readiness_interval=0.1)
    await _until(session, f"{gateway.url}/readyz", 200)
    connected = True
    gateway.app[READINESS].add("broker", lambda: None if connected else "broker disconnected")
    connected = False
    body = await _until(session, f"{gateway.url}/readyz", 503)
    assert body["checks"] == {"broker": "broker disconnected"}
    connected = True
    gateway.app[DRAIN].begin()
    body = await _until(session, f"{gateway.url}/readyz", 503)
    assert body["checks"] == {"draining": "draining: shutting down"}
    assert await _get(session, f"{gateway.url}/healthz") == (200, {"status": "ok"})


@pytest.mark.asyncio
async def test_probe_times_out_on_a_silent_address() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so the connect hangs or fails at once.
    probe = UpstreamProbe("http://192.0.2.1:9/v1", interval=1, timeout=0.2)
    assert probe.reason() == "not reached yet"
    async with asyncio.timeout(WAIT):
        reason = await probe.probe()
    assert reason is not None and reason.startswith("upstream unreachable")
