"""The error middleware: a failure before the answer began is a 500 in the OpenAI shape; one
after a streamed answer began cuts that answer off, never writes a second head into it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import served_upstream

from gateway.http.access import note_prepared
from gateway.http.errors import error_middleware


async def fails_at_once(request: web.Request) -> web.StreamResponse:
    raise ValueError("a bug")


async def fails_mid_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    raise RuntimeError("Connection closed.")  # what aiohttp's reader raises past a broken body


@pytest_asyncio.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application(middlewares=[error_middleware])
    app.on_response_prepare.append(note_prepared)
    app.router.add_get("/at-once", fails_at_once)
    app.router.add_get("/mid-stream", fails_mid_stream)
    async with served_upstream(app) as url:
        yield url.removesuffix("/v1")


@pytest.mark.asyncio
async def test_a_failure_before_the_answer_is_a_500_in_the_openai_shape(base: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/at-once") as response:
        assert response.status == 500
        body = await response.json()
    assert body["error"]["type"] == "server_error"


@pytest.mark.asyncio
async def test_a_failure_mid_stream_cuts_the_stream_off_without_a_second_head(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The 500 used to be written into the chunked body already under way: the client read
    # "HTTP/1.1 500" as a chunk size. It must see the body end in error instead, never cleanly
    # (a clean end would pass for the end of the stream).
    received = b""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/mid-stream") as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in response.content.iter_any():
                received += chunk
    assert received == b"data: 1\n\n"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)
