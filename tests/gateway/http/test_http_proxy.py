"""``/v1`` passthrough: every SDK call works through runcast; keys are handled as documented."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import (
    WAIT,
    Gateway,
    StartGateway,
    StartSim,
    new_thread,
    raw_connection,
    sdk_client,
    served_upstream,
)
from multidict import CIMultiDict
from openai import AsyncOpenAI

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
RUNCAST_KEY = "rk-caller-key"


@pytest.mark.asyncio
async def test_non_streamed_sdk_calls_pass_through(gateway: Gateway, sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await new_thread(sdk)
    run = await sdk.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=20
    )
    assert run.status == "completed"
    steps = await sdk.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    assert [step.type for step in steps.data] == ["message_creation"]
    messages = await sdk.beta.threads.messages.list(thread_id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]
    assert messages.data[1].content[0].text.value  # type: ignore[union-attr]
    retrieved = await sdk.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert retrieved.id == run.id
    # A non-streamed run did not pass through the relay: it has no channel.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway.url}/streams/runs/{run.id}") as response,
    ):
        assert response.status == 404


@pytest.mark.asyncio
async def test_upstream_errors_pass_through_unchanged(gateway: Gateway, sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.beta.threads.retrieve("thread_missing")
    assert caught.value.status_code == 404
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    # The upstream's error body comes back byte for byte.
    headers = {"Authorization": "Bearer sk-x", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.v1}/threads/thread_x", headers=headers) as via:
            relayed = (via.status, await via.read())
        async with session.get(f"{gateway.upstream_url}/threads/thread_x", headers=headers) as up:
            direct = (up.status, await up.read())
    assert relayed == direct
    assert relayed[0] == 404


@pytest.mark.asyncio
async def test_streamed_run_refused_upstream_keeps_status_and_body(
    gateway: Gateway, sdk: AsyncOpenAI
) -> None:
    assistant_id, thread_id = await new_thread(sdk)
    with pytest.raises(openai.RateLimitError) as caught:
        async with sdk.beta.threads.runs.stream(
            thread_id=thread_id,
            assistant_id=assistant_id,
            metadata={"mock_scenario": "rate_limited"},
        ) as stream:
            await stream.until_done()
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") is not None


# -- keys ------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.authorizations: list[str | None] = []


@pytest_asyncio.fixture
async def echo_upstream() -> AsyncIterator[tuple[str, Recorder]]:
    """An upstream that records Authorization; ``/denied`` (401) and ``/echo`` (400) quote the key."""
    recorder = Recorder()

    async def handle(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        recorder.authorizations.append(auth)
        if request.path.endswith(("/denied", "/echo")):
            key = (auth or "").removeprefix("Bearer ")
            return web.json_response(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {key}.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status=401 if request.path.endswith("/denied") else 400,
                headers={"x-request-id": "req_1", "set-cookie": "a=b"},
            )
        return web.json_response({"object": "list", "data": []}, headers={"x-request-id": "req_2"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with served_upstream(app) as url:
        yield url, recorder


@pytest.mark.asyncio
async def test_runcast_key_required_and_upstream_key_never_shown(
    start_gateway: StartGateway, echo_upstream: tuple[str, Recorder]
) -> None:
    url, recorder = echo_upstream
    gateway = await start_gateway(
        upstream_url=url, upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,)
    )
    async with aiohttp.ClientSession() as session:
        for auth in (None, "Bearer wrong", f"Bearer {UPSTREAM_KEY}"):
            headers = {"Authorization": auth} if auth else {}
            async with session.get(f"{gateway.v1}/assistants", headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "invalid_api_key"
        assert recorder.authorizations == []

        ok_headers = {"Authorization": f"Bearer {RUNCAST_KEY}"}
        async with session.get(f"{gateway.v1}/assistants?limit=2", headers=ok_headers) as ok:
            assert ok.status == 200
            assert ok.headers["x-request-id"] == "req_2"
        async with session.get(f"{gateway.v1}/denied", headers=ok_headers) as denied:
            assert denied.status == 401
            denied_body = await denied.json()
            assert "set-cookie" not in denied.headers
        async with session.get(f"{gateway.v1}/echo", headers=ok_headers) as echo:
            assert echo.status == 400
            echo_text = await echo.text()
    assert recorder.authorizations == [f"Bearer {UPSTREAM_KEY}"] * 3
    # A 401 is about runcast's key: its body (which may quote the key) is runcast's own.
    assert denied_body["error"]["code"] == "upstream_key_rejected"
    assert UPSTREAM_KEY not in echo_text
    assert "Incorrect API key provided: ***." in echo_text


@pytest.mark.asyncio
async def test_callers_bearer_passed_on_without_upstream_key(
    start_gateway: StartGateway, echo_upstream: tuple[str, Recorder]
) -> None:
    url, recorder = echo_upstream
    gateway = await start_gateway(upstream_url=url)
    client = sdk_client(gateway, api_key="sk-callers-own")
    try:
        await client.beta.assistants.list()
    finally:
        await client.close()
    assert recorder.authorizations == ["Bearer sk-callers-own"]


@pytest.mark.asyncio
async def test_a_passthrough_stream_whose_caller_stops_reading_is_cut_off(
    start_gateway: StartGateway,
) -> None:
    # Any other endpoint answering text/event-stream is relayed as it comes; a caller that
    # never read held the handler and its upstream connection for as long as it stayed.
    upstream_gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: " + b"x" * 65536 + b"\n\n")
        except ConnectionError:
            upstream_gone.set()
        return response

    app = web.Application()
    app.router.add_get("/v1/other/stream", endless)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url, creator_write_timeout=0.5)
        _, writer = await raw_connection(gateway.url)
        try:
            writer.write(b"GET /v1/other/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # Never read: once the socket buffers are full, runcast's write waits, then gives up.
            async with asyncio.timeout(WAIT):
                await upstream_gone.wait()
        finally:
            writer.close()


@pytest.mark.asyncio
async def test_a_whole_answer_the_caller_never_reads_is_dropped_after_the_write_timeout(
    start_gateway: StartGateway,
) -> None:
    # aiohttp writes a handler's answer with no deadline: an unread 8 MB body stayed in memory,
    # and the connection open, for as long as the caller kept it.
    big = b'{"data":"' + b"x" * (8 << 20) + b'"}'

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/files/big", large)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url, creator_write_timeout=0.5)
        server = gateway.runner.server
        assert server is not None
        _, writer = await raw_connection(gateway.url)
        try:
            writer.write(b"GET /v1/files/big HTTP/1.1\r\nHost: localhost\r\n\r\n")
            async with asyncio.timeout(WAIT):
                while not server.connections:
                    await asyncio.sleep(0.01)
                while server.connections:
                    await asyncio.sleep(0.05)
        finally:
            writer.close()


# -- 2xx bodies relayed as they come -----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_download_larger_than_max_response_bytes_arrives_whole(
    start_gateway: StartGateway,
) -> None:
    # A proxied 2xx body was read whole, up to max_response_bytes (64 MiB), before any of it was
    # answered: a larger file (the SDK's files.content of a 70 MiB file) was a retryable 502.
    data = bytes(range(256)) * 1024  # 256 KiB, 256 times the limit below

    async def content(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), 16384):
            await response.write(data[start : start + 16384])
        return response

    app = web.Application()
    app.router.add_get("/v1/files/{file_id}/content", content)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url, upstream={"max_response_bytes": 1024})
        client = sdk_client(gateway)
        try:
            received = await client.files.content("file-big")
        finally:
            await client.close()
    assert received.response.status_code == 200
    assert received.content == data


@pytest.mark.asyncio
async def test_the_first_bytes_of_a_slow_body_reach_the_caller_before_its_end(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # Streamed speech, a download: nothing reached the caller before the upstream's last byte.
    finish = asyncio.Event()

    async def speech(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await response.prepare(request)
        await response.write(b"ID3-first-frame")
        await finish.wait()
        await response.write(b"-last-frame")
        return response

    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        try:
            async with (
                asyncio.timeout(5),
                session.post(f"{gateway.v1}/audio/speech", json={"input": "hi"}) as response,
            ):
                # The upstream is still waiting to send the rest.
                assert response.status == 200
                assert await response.content.readexactly(15) == b"ID3-first-frame"
                finish.set()
                assert await response.read() == b"-last-frame"
        finally:
            finish.set()


@pytest.mark.asyncio
async def test_a_body_the_upstream_breaks_off_fails_the_callers_read(
    start_gateway: StartGateway, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # Once the head is out, a cut body must not end cleanly: the caller would keep a shorter file.
    async def content(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"x" * 40_000)
        await asyncio.sleep(0.2)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_get("/v1/files/{file_id}/content", content)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        async with session.get(f"{gateway.v1}/files/file-cut/content") as response:
            assert response.status == 200
            assert "Content-Length" not in response.headers
            received = 0
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in response.content.iter_any():
                    received += len(chunk)
    assert 0 < received < 100_000
    [warning] = [r for r in caplog.records if "broke off" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("passthrough body /v1/files/file-cut/content broke off")
    assert warning.getMessage().endswith("the caller's connection is aborted")
    # An HTTP/1.0 caller could not tell an aborted body from a whole one (it ends with the
    # connection either way): it gets the body whole or, cut, a 502, as before relaying.
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        async with (
            aiohttp.ClientSession(version=aiohttp.HttpVersion10) as http10,
            http10.get(f"{gateway.v1}/files/file-cut/content") as response,
        ):
            assert response.status == 502
            assert (await response.json())["error"]["code"] == "upstream_unavailable"


@pytest.mark.asyncio
async def test_the_upstream_key_is_masked_across_the_chunks_of_a_relayed_body(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # The body is relayed chunk by chunk; the key split between two of them is masked still.
    key = UPSTREAM_KEY.encode()

    async def content(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"a" * 20_000 + b" key=" + key[:10])
        await asyncio.sleep(0.1)
        await response.write(key[10:] + b" end")
        return response

    app = web.Application()
    app.router.add_get("/v1/files/{file_id}/content", content)
    async with served_upstream(app) as url:
        gateway = await start_gateway(
            upstream_url=url, upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,)
        )
        headers = {"Authorization": f"Bearer {RUNCAST_KEY}"}
        async with session.get(f"{gateway.v1}/files/f/content", headers=headers) as response:
            assert response.status == 200
            body = await response.read()
    assert body == b"a" * 20_000 + b" key=*** end"


@pytest.mark.asyncio
async def test_sdk_telemetry_simulator_switches_and_caching_headers_cross_the_proxy(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # The SDK's X-Stainless-* (its retry count among them) and the simulator's X-Mock-* switches
    # reach the upstream; its caching and location headers come back. Cookies stay behind both
    # ways, and so does what only concerns one hop.
    received: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response(
            {"object": "list", "data": []},
            headers={
                "ETag": '"v1"',
                "Cache-Control": "max-age=60",
                "Location": "/v1/files/file_1",
                "Link": '</v1/files?after=file_1>; rel="next"',
                "Allow": "GET, POST",
                "Set-Cookie": "session=upstream",
            },
        )

    app = web.Application()
    app.router.add_get("/v1/files", answer)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        sent = {
            "X-Stainless-Retry-Count": "1",
            "X-Stainless-Lang": "python",
            "X-Mock-Scenario": "rate_limited",
            "Cookie": "viewer=1",
            "Keep-Alive": "timeout=5",
        }
        async with session.get(f"{gateway.v1}/files", headers=sent) as response:
            assert response.status == 200
            headers = response.headers
    [upstream_got] = received
    assert upstream_got["X-Stainless-Retry-Count"] == "1"
    assert upstream_got["X-Stainless-Lang"] == "python"
    assert upstream_got["X-Mock-Scenario"] == "rate_limited"
    assert "Cookie" not in upstream_got and "Keep-Alive" not in upstream_got
    assert headers["ETag"] == '"v1"'
    assert headers["Cache-Control"] == "max-age=60"
    assert headers["Location"] == "/v1/files/file_1"
    assert headers["Link"] == '</v1/files?after=file_1>; rel="next"'
    assert headers["Allow"] == "GET, POST"
    assert "Set-Cookie" not in headers


@pytest.mark.asyncio
async def test_a_query_in_the_upstream_url_goes_with_every_call(
    start_gateway: StartGateway, start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    # The caller's path went into the base URL's query: GET /v1?code=SECRET/echo?a=1.
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=f"{url}?code=SECRET")
        async with session.get(
            f"{gateway.v1}/echo?a=1", headers={"Authorization": "Bearer sk-caller"}
        ) as response:
            assert response.status == 200
    assert seen == ["/v1/echo?code=SECRET&a=1"]
    # Streamed calls (relayed, not proxied) reach the right path too.
    sim = await start_sim()
    gateway = await start_gateway(upstream_url=f"{sim}?api-version=2024-10-21")
    client = sdk_client(gateway)
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    finally:
        await client.close()
    assert chunks and chunks[-1].choices[0].finish_reason == "stop"


# -- how long the upstream has to answer ----------------------------------------------------------

SLOW_ANSWER = 1.5
"""Seconds the slow upstream below takes to answer: past the first-byte timeout the gateways of
these tests have (0.5 s), within their answer timeout (3 s)."""
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "thought it over"},
            "finish_reason": "stop",
        }
    ],
}


@pytest_asyncio.fixture
async def slow_upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """An upstream that answers every call (streamed or not) after SLOW_ANSWER seconds, as a
    reasoning model does; its base URL and the paths it was asked for."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        body = await request.json()
        await asyncio.sleep(SLOW_ANSWER)
        if not body.get("stream"):
            return web.json_response(COMPLETION)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_post("/v1/completions", answer)
    async with served_upstream(app) as url:
        yield url, asked


@pytest.mark.asyncio
async def test_a_non_streamed_call_waits_the_answer_timeout_not_the_first_byte_one(
    start_gateway: StartGateway, slow_upstream: tuple[str, list[str]]
) -> None:
    # A non-streamed call's upstream writes nothing before its whole answer: it was cut at the
    # first-byte timeout (60 s), which a reasoning model's answer often passes, and the SDK
    # (whose own timeout is 600 s) sent it twice more.
    url, asked = slow_upstream
    gateway = await start_gateway(
        upstream_url=url, upstream={"first_byte_timeout": 0.5, "answer_timeout": 3.0}
    )
    client = sdk_client(gateway)
    try:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "think hard"}]
        )
        assert completion.choices[0].message.content == "thought it over"
        # A stream keeps the first-byte timeout.
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "think hard"}], stream=True
            )
        # So does a stream runcast passes through (the legacy completions endpoint).
        with pytest.raises(openai.APIStatusError) as legacy:
            await client.completions.create(model="m", prompt="think hard", stream=True)
    finally:
        await client.close()
    for error in (caught.value, legacy.value):
        assert error.status_code == 504
        assert "first_byte timeout after 0.5s" in error.message
        assert error.response.headers["x-should-retry"] == "false"
    assert asked == ["/v1/chat/completions"] * 2 + ["/v1/completions"]


@pytest.mark.asyncio
async def test_an_answer_later_than_the_answer_timeout_is_a_504_the_sdk_does_not_resend(
    start_gateway: StartGateway, slow_upstream: tuple[str, list[str]]
) -> None:
    # The request was sent: the upstream may be generating (and billing) it. The 504 said
    # nothing about retrying, and the SDK's default two retries made that three generations.
    url, asked = slow_upstream
    gateway = await start_gateway(
        upstream_url=url, upstream={"first_byte_timeout": 3.0, "answer_timeout": 0.5}
    )
    client = AsyncOpenAI(base_url=gateway.v1, api_key="sk-caller", max_retries=2, timeout=30)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "think hard"}]
            )
    finally:
        await client.close()
    assert caught.value.status_code == 504
    assert caught.value.response.headers["x-should-retry"] == "false"
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "upstream_timeout"
    assert error["message"] == "upstream did not answer: upstream first_byte timeout after 0.5s"
    assert asked == ["/v1/chat/completions"]


# -- repeated response headers --------------------------------------------------------------------

REPEATED = [
    ("Link", '</v1/models?after=m_2>; rel="next"'),
    ("x-ratelimit-remaining-requests", "9"),
    ("Link", '</v1/models?before=m_1>; rel="prev"'),
    ("x-ratelimit-remaining-requests", "8"),
    ("Set-Cookie", "a=1"),
    ("Set-Cookie", "b=2"),
]


@pytest.mark.asyncio
async def test_headers_the_upstream_repeats_reach_the_caller_with_every_value(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # Only the last value of each reached the caller: the SDK's pagination read one Link.
    chunk = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},'
        b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []}, headers=CIMultiDict(REPEATED))

    async def chat(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict([("Content-Type", "text/event-stream"), *REPEATED])
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        auth = {"Authorization": "Bearer sk-caller"}
        async with session.get(f"{gateway.v1}/models", headers=auth) as proxied:
            assert proxied.status == 200
            proxied_head = proxied.headers.copy()
        # A streamed completion's head, which its creator gets, carries them as well.
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with session.post(
            f"{gateway.v1}/chat/completions", json=body, headers=auth
        ) as streamed:
            assert streamed.status == 200
            assert b"data: [DONE]" in await streamed.read()
            streamed_head = streamed.headers.copy()
    for head in (proxied_head, streamed_head):
        assert head.getall("Link") == [value for name, value in REPEATED if name == "Link"]
        assert head.getall("x-ratelimit-remaining-requests") == ["8"]  # one value: the last
        assert "Set-Cookie" not in head


_HEADERS = {"Authorization": "Bearer sk-x", "OpenAI-Beta": "assistants=v2"}


@pytest.mark.asyncio
async def test_an_answer_that_came_whole_is_passed_on_whole_with_its_length(
    gateway: Gateway,
) -> None:
    # A JSON answer arrives in one read: one answer with Content-Length, not a chunked stream.
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway.v1}/threads", json={}, headers=_HEADERS) as response,
    ):
        assert response.status == 200
        assert response.headers.get("Transfer-Encoding") is None
        body = await response.read()
        assert int(response.headers["Content-Length"]) == len(body)
        assert json.loads(body)["object"] == "thread"
