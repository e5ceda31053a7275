"""Upstream requests through an HTTP proxy (``--upstream-proxy``, or ``HTTPS_PROXY`` and the
like): streamed and proxied calls reach an upstream only the proxy can resolve, with the proxy's
credentials, and a proxy that is down is named as such."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import aiohttp
import pytest
from forward_proxy import ForwardProxy
from http_helpers import Gateway, StartGateway, StartSim, closed_port, sdk_client

REMOTE = "http://models.upstream.test/v1"
"""A name only the proxy resolves, as an egress proxy resolves what the gateway's host cannot."""
KEY = {"Authorization": "Bearer sk-caller"}


async def _chat(gateway: Gateway) -> str:
    sdk = sdk_client(gateway)
    try:
        stream = await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    finally:
        await sdk.close()


@pytest.mark.asyncio
async def test_streams_and_proxied_calls_go_through_the_configured_proxy_with_its_credentials(
    start_sim: StartSim, start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    sim_port = urlsplit(await start_sim(deltas=5)).port
    assert sim_port is not None
    async with ForwardProxy(names={"models.upstream.test": sim_port}) as proxy:
        configured = proxy.url.replace("http://", "http://egress:s3cret@")
        gateway = await start_gateway(upstream_url=REMOTE, upstream={"proxy": configured})
        assert await _chat(gateway)
        async with session.get(f"{gateway.url}/v1/assistants", headers=KEY) as listed:
            assert listed.status == 200 and (await listed.json())["object"] == "list"
        async with session.get(f"{gateway.url}/readyz") as ready:  # the probe reaches the proxy
            assert ready.status == 200, await ready.text()
    asked = {(a.method, a.target) for a in proxy.asked}
    assert ("POST", f"{REMOTE}/chat/completions") in asked
    # The list call took a kept-alive connection, whose later requests the proxy pipes unread:
    # it answered, and only the proxy knows the upstream's name.
    expected = "Basic " + base64.b64encode(b"egress:s3cret").decode()
    assert {a.proxy_authorization for a in proxy.asked} == {expected}


@pytest.mark.asyncio
async def test_the_environments_proxy_is_taken_unless_no_proxy_names_the_upstream(
    start_sim: StartSim,
    start_gateway: StartGateway,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim_port = urlsplit(await start_sim(deltas=5)).port
    assert sim_port is not None
    async with ForwardProxy(names={"models.upstream.test": sim_port}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        gateway = await start_gateway(upstream_url=REMOTE)
        assert await _chat(gateway)
        assert ("POST", f"{REMOTE}/chat/completions") in {(a.method, a.target) for a in proxy.asked}

        proxy.asked.clear()
        monkeypatch.setenv("NO_PROXY", ".upstream.test")
        direct = await start_gateway(upstream_url=REMOTE, upstream={"connect_timeout": 3.0})
        async with session.get(f"{direct.url}/v1/assistants", headers=KEY) as refused:
            assert refused.status == 502
        assert proxy.asked == []

        # A loopback upstream never goes through the environment's proxy (the SDK, which reads
        # HTTP_PROXY too, sends it its own request to runcast).
        local = await start_gateway()
        assert await _chat(local)
        assert not [a for a in proxy.asked if a.target.startswith(local.upstream_url)]


@pytest.mark.asyncio
async def test_a_proxy_that_is_down_is_named_in_the_error_and_in_readiness(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        upstream_url=REMOTE, upstream={"proxy": f"http://127.0.0.1:{closed_port()}"}
    )
    async with session.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=KEY,
    ) as answer:
        assert answer.status == 502
        message = (await answer.json())["error"]["message"]
    assert message.endswith("cannot connect to the upstream's proxy: Connection refused")
    async with session.get(f"{gateway.url}/readyz") as ready:
        assert ready.status == 503


@pytest.mark.asyncio
async def test_an_https_upstream_is_tunnelled_and_a_refused_tunnel_is_named(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    async with ForwardProxy() as proxy:  # it answers CONNECT with 405
        gateway = await start_gateway(
            upstream_url="https://api.upstream.test/v1", upstream={"proxy": proxy.url}
        )
        async with session.get(f"{gateway.v1}/assistants", headers=KEY) as refused:
            assert refused.status == 502
            message = (await refused.json())["error"]["message"]
    assert [(a.method, a.target) for a in proxy.asked] == [("CONNECT", "api.upstream.test:443")]
    assert message.endswith("the upstream's proxy refused the connection (HTTP 405)")


@pytest.mark.asyncio
async def test_a_proxy_refusing_a_plain_http_request_is_named_not_passed_on_as_the_upstreams(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    async with ForwardProxy(credentials="Basic right") as proxy:
        gateway = await start_gateway(upstream_url=REMOTE, upstream={"proxy": proxy.url})
        async with session.get(f"{gateway.v1}/assistants", headers=KEY) as refused:
            assert refused.status == 502
            message = (await refused.json())["error"]["message"]
    assert message.endswith("the upstream's proxy refused the connection (HTTP 407)")
