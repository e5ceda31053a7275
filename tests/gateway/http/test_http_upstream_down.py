"""An upstream that cannot be reached: the caller gets a 502 naming the fault, not the address.

The message used to be aiohttp's own text, ``cannot connect to upstream http://10.0.3.7:8000:
Cannot connect to host 10.0.3.7:8000 ssl:default [Connect call failed ...]``: the upstream's
address (an internal name, often) told to every caller of the proxy and of streamed calls.
"""

from __future__ import annotations

import socket

import aiohttp
import pytest
from http_helpers import StartGateway

_CALLS = [
    ("GET", "/models", None),
    ("POST", "/chat/completions", {"model": "m", "messages": [], "stream": True}),
    ("POST", "/responses", {"model": "m", "input": "hi", "stream": True}),
    ("POST", "/threads/thread_1/runs", {"assistant_id": "asst_1", "stream": True}),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_an_unreachable_upstream_is_a_502_that_names_the_fault_not_the_address(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    port = _closed_port()
    gateway = await start_gateway(upstream_url=f"http://127.0.0.1:{port}/v1")
    for method, path, body in _CALLS:
        async with session.request(method, f"{gateway.v1}{path}", json=body) as response:
            assert response.status == 502, path
            error = (await response.json())["error"]
        assert error["code"] == "upstream_unavailable", path
        assert (
            error["message"]
            == "upstream failed: cannot connect to the upstream: Connection refused"
        )
        assert str(port) not in error["message"]
