"""Subscribe-token scope against ids claimed by callers, token lifetimes, and HEAD on streams."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from http_helpers import WAIT, Gateway, StartGateway, Subscriber, new_thread, read_sse, sdk_client

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}


async def finished_run(gateway: Gateway, session: aiohttp.ClientSession) -> dict[str, str]:
    """One streamed run to its end; the creator's runcast-* response headers."""
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    async with session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers=HEADERS,
    ) as response:
        assert response.status == 200, await response.text()
        await read_sse(response, Subscriber())
        return {k: v for k, v in response.headers.items() if k.startswith("runcast-")}


@pytest.mark.asyncio
async def test_a_refused_submission_does_not_tie_a_run_to_the_callers_thread(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token")
    victim = await finished_run(gateway, session)
    mine = await finished_run(gateway, session)
    victim_run = victim["runcast-run-id"]
    # A submission naming someone else's run under the caller's own thread: the upstream
    # refuses it, and runcast must not take the URL's word for which thread the run is on.
    async with session.post(
        f"{gateway.v1}/threads/{mine['runcast-thread-id']}/runs/{victim_run}/submit_tool_outputs",
        json={"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}], "stream": True},
        headers=HEADERS,
    ) as response:
        assert response.status >= 400
    run_url = f"{gateway.url}/streams/runs/{victim_run}?since=0"
    async with session.get(f"{run_url}&token={mine['runcast-thread-token']}") as response:
        assert response.status == 403
    async with session.get(f"{run_url}&token={victim['runcast-thread-token']}") as response:
        assert response.status == 200
        sub = await read_sse(response, Subscriber())
        assert sub.names[-1] == "done"


@pytest.mark.asyncio
async def test_head_on_a_stream_sends_no_body(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    head = await finished_run(gateway, session)
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"HEAD /streams/runs/{head['runcast-run-id']}?since=0 HTTP/1.1\r\n"
            f"Host: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        async with asyncio.timeout(WAIT):
            raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status, _, rest = raw.partition(b"\r\n")
    assert b" 200 " in status or status.endswith(b" 200"), raw[:200]
    _, sep, body = rest.partition(b"\r\n\r\n")
    assert sep and body == b"", repr(raw[:800])


@pytest.mark.asyncio
async def test_a_token_minted_with_a_fractional_ttl_is_valid_at_once(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token", api_keys=("rk-backend",))
    head = await finished_run(gateway, session)
    async with session.post(
        f"{gateway.url}/tokens",
        json={"run_id": head["runcast-run-id"], "ttl": 0.5},
        headers={"Authorization": "Bearer rk-backend"},
    ) as response:
        assert response.status == 200
        minted = await response.json()
    url = f"{gateway.url}/streams/runs/{head['runcast-run-id']}?since=0&token={minted['token']}"
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        sub = await read_sse(response, Subscriber())
        assert sub.names[-1] == "done"


@pytest.mark.asyncio
async def test_head_on_an_unknown_run_is_404(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    async with session.head(f"{gateway.url}/streams/runs/run_nope") as response:
        assert response.status == 404
    assert gateway.broker.statistics().subscribers == 0
