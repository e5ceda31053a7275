"""The raw request path used by the transparent proxy, and UpstreamResponse body reading."""

from __future__ import annotations

import gzip

import pytest
from aiohttp import web

from gateway.errors import UpstreamTimeout
from gateway.upstream import UpstreamClient
from parsers.errors import RemoteProtocolError

from .servers import FakeUpstream, fixture_bytes, make_settings, reply_json, reply_sse

ERROR = {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}}


@pytest.mark.asyncio
async def test_request_passes_body_and_query_byte_exact(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route(
        "POST", "/chat/completions", reply_json(200, {"ok": True}, {"x-request-id": "r1"})
    )
    body = b'{"model" :"m",  "messages":[{"role":"user","content":"\\u00e9t\xc3\xa9"}], "n": 1.0}'
    async with client.request(
        "post", "/chat/completions", query="a=%5B1%5D&b=x+y&a=2", body=body
    ) as resp:
        assert resp.status == 200 and resp.ok
        assert resp.headers["X-Request-Id"] == "r1"
        assert resp.content_type == "application/json"
        assert await resp.read(limit=1 << 20) == b'{"ok":true}'
    recorded = upstream.requests[0]
    assert recorded.body == body
    assert recorded.raw_query == "a=%5B1%5D&b=x+y&a=2"
    assert recorded.headers["Content-Type"] == "application/json"
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_request_returns_error_answers_instead_of_raising(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("GET", "/assistants/asst_x", reply_json(404, ERROR))
    async with client.request("GET", "/assistants/asst_x") as resp:
        assert resp.status == 404 and not resp.ok
        assert (
            await resp.read(limit=1 << 20)
            == b'{"error":{"message":"nope","type":"invalid_request_error","param":null,"code":null}}'
        )


@pytest.mark.asyncio
async def test_request_without_retry_budget_hands_back_the_429(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", "/threads", reply_json(429, ERROR, {"Retry-After": "0"}))
    async with client.request("POST", "/threads", body=b"{}", max_retries=0) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "0"
    assert len(upstream.requests) == 1


@pytest.mark.asyncio
async def test_streamed_passthrough_yields_the_body_chunk_by_chunk(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    raw = fixture_bytes("B2-after-submit.sse")
    upstream.route("POST", "/threads/thread_9Qx/runs", reply_sse(raw, chunks=[333]))
    body = b'{"assistant_id":"asst_42","stream":true}'
    async with client.request("POST", "/threads/thread_9Qx/runs", body=body) as resp:
        assert resp.content_type == "text/event-stream"
        chunks = [chunk async for chunk in resp]
        assert await resp.read_chunk() == b""
    assert b"".join(chunks) == raw
    assert all(chunks)
    assert upstream.requests[0].body == body


@pytest.mark.asyncio
async def test_compressed_bodies_relayed_raw_or_decoded(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    plain = fixture_bytes("A-text.sse")
    packed = gzip.compress(plain)

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=packed, headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )

    upstream.route("GET", "/files/f/content", gzipped)
    async with client.request("GET", "/files/f/content", decompress=False) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.read(limit=1 << 20) == packed
    async with client.request("GET", "/files/f/content") as resp:
        assert await resp.read(limit=1 << 20) == plain


@pytest.mark.asyncio
async def test_read_limit_is_enforced(upstream: FakeUpstream, client: UpstreamClient) -> None:
    upstream.route("GET", "/big", reply_sse(b"x" * 5000, chunks=[1000]))
    async with client.request("GET", "/big") as resp:
        with pytest.raises(RemoteProtocolError):
            await resp.read(limit=4096)
        assert resp.released
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_passthrough_idle_timeout(
    upstream: FakeUpstream, short_client: UpstreamClient
) -> None:
    upstream.route("GET", "/slow", reply_sse(b"data: 1\n\n" * 4, stall_at=9, stall_for=2.0))
    async with short_client.request("GET", "/slow") as resp:
        assert await resp.read_chunk() == b"data: 1\n\n"
        with pytest.raises(UpstreamTimeout) as info:
            await resp.read_chunk()
    assert info.value.phase == "idle"


@pytest.mark.asyncio
async def test_non_streamed_call_bounded_by_max_response_bytes(upstream: FakeUpstream) -> None:
    upstream.route(
        "GET",
        "/threads/t/runs/r",
        reply_json(200, {"id": "r", "object": "thread.run", "instructions": "x" * 4000}),
    )
    settings = make_settings(upstream.base_url, max_response_bytes=1024)
    async with UpstreamClient(settings) as client:
        with pytest.raises(RemoteProtocolError):
            await client.retrieve_run("t", "r")
        assert client.statistics().open_responses == 0
