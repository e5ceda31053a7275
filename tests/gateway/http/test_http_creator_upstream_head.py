"""A streamed creating call is sent upstream once, and its answer's head comes back with it.

The caller's own client owns retries: runcast used to retry a streamed create that met a 429 or
503 with a short ``Retry-After`` (2 more times by default) under the SDK's own retries, so a
caller with ``max_retries=0`` still sent 3 requests and one with 2 sent 9. And a streamed answer
carried only ``x-request-id`` of the upstream's head, where the proxy returns the rate-limit and
processing headers that callers throttle on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import openai
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import Gateway, StartGateway, sdk_client, served_upstream
from openai import AsyncOpenAI

_CHAT = (
    b'data: {"id":"chatcmpl-h1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
_HEAD = {
    "x-request-id": "req_up1",
    "x-ratelimit-remaining-requests": "41",
    "x-ratelimit-reset-tokens": "6ms",
    "openai-processing-ms": "17",
    "openai-model": "gpt-4o-2024-08-06",
    "set-cookie": "session=upstream",
    "cache-control": "max-age=60",
}


@pytest_asyncio.fixture
async def upstream(start_gateway: StartGateway) -> AsyncIterator[tuple[Gateway, list[str]]]:
    """A gateway in front of an upstream that answers 429 (``Retry-After: 0``) to a request
    whose query says ``?status=429``, else a one-chunk chat stream; and the paths it got."""
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        hits.append(request.path)
        if request.query.get("status") == "429":
            error = {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
            return web.json_response(
                {"error": error}, status=429, headers={"Retry-After": "0", **_HEAD}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_HEAD})
        await response.prepare(request)
        await response.write(_CHAT)
        return response

    app = web.Application()
    app.router.add_post("/v1/{path:.*}", answer)
    async with served_upstream(app) as url:
        # runcast's own retry budget is the default one (2), as a served runcast has it.
        yield await start_gateway(upstream_url=url, upstream={"max_retries": 2}), hits


_CREATES: dict[str, Callable[[AsyncOpenAI], Awaitable[object]]] = {
    "chat": lambda c: c.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_query={"status": "429"},
    ),
    "responses": lambda c: c.responses.create(
        model="m", input="hi", stream=True, extra_query={"status": "429"}
    ),
    "runs": lambda c: c.beta.threads.runs.create(
        thread_id="thread_1", assistant_id="asst_1", stream=True, extra_query={"status": "429"}
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(_CREATES))
async def test_a_streamed_create_met_by_429_is_sent_once_and_the_429_relayed(
    upstream: tuple[Gateway, list[str]], kind: str
) -> None:
    gateway, hits = upstream
    sdk = sdk_client(gateway)  # max_retries=0: the caller wants no retry
    try:
        with pytest.raises(openai.RateLimitError) as info:
            await _CREATES[kind](sdk)
    finally:
        await sdk.close()
    assert len(hits) == 1, hits
    assert info.value.response.headers["retry-after"] == "0"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "41"


@pytest.mark.asyncio
async def test_a_streamed_answer_carries_the_upstream_rate_limit_and_processing_headers(
    upstream: tuple[Gateway, list[str]], session: aiohttp.ClientSession
) -> None:
    gateway, _ = upstream
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with session.post(f"{gateway.v1}/chat/completions", json=body) as response:
        assert response.status == 200
        await response.read()
    headers = response.headers
    assert headers["x-request-id"] == "req_up1"
    assert headers["x-ratelimit-remaining-requests"] == "41"
    assert headers["x-ratelimit-reset-tokens"] == "6ms"
    assert headers["openai-processing-ms"] == "17"
    assert headers["openai-model"] == "gpt-4o-2024-08-06"
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["runcast-completion-id"] == "chatcmpl-h1"
    assert "Set-Cookie" not in headers  # cookies stay behind, as through the proxy
    assert headers.getall("Cache-Control") == ["no-cache"]  # a stream is never cached


@pytest.mark.asyncio
async def test_a_whole_json_answer_to_a_streamed_create_is_a_502_not_to_retry(
    start_gateway: StartGateway,
) -> None:
    # A server that ignores "stream": true answers the whole completion as JSON: it generated
    # (and billed) the answer. The SDKs retry a 502 unless told not to, regenerating it.
    hits: list[str] = []

    async def whole(request: web.Request) -> web.Response:
        await request.read()
        hits.append(request.path)
        return web.json_response({"id": "chatcmpl-whole", "object": "chat.completion"})

    app = web.Application()
    app.router.add_post("/v1/{path:.*}", whole)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        sdk = AsyncOpenAI(base_url=gateway.v1, api_key="sk-caller", max_retries=2, timeout=30)
        try:
            with pytest.raises(openai.InternalServerError) as info:
                await _CREATES["chat"](sdk)
        finally:
            await sdk.close()
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(hits) == 1  # the SDK's 2 retries were not spent


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "api"),
    [
        ("/responses", {"model": "m", "input": "hi", "stream": True}, "OpenAI Responses"),
        ("/chat/completions", {"model": "m", "messages": [], "stream": True}, "OpenAI Chat"),
    ],
)
async def test_an_empty_stream_is_named_in_its_protocols_words(
    start_gateway: StartGateway,
    session: aiohttp.ClientSession,
    path: str,
    body: dict[str, object],
    api: str,
) -> None:
    # An empty 200 event stream was "not an Assistants event stream" for any request.
    async def empty(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        return response

    app = web.Application()
    app.router.add_post("/v1/{path:.*}", empty)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        async with session.post(f"{gateway.v1}{path}", json=body) as response:
            assert response.status == 502
            message = (await response.json())["error"]["message"]
    assert "Assistants" not in message and f"not an {api}" in message
    # The upstream took the request: the SDK must not send it again (straight from the
    # upstream it would have got an empty stream, once).
    assert response.headers["x-should-retry"] == "false"
