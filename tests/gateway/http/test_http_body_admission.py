"""Which request bodies runcast reads at all: refused callers, declared sizes and stalled uploads
cost it nothing, broken encodings are the client's 400, and odd credentials are a 401."""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Any

import orjson
import pytest
from http_helpers import WAIT, Gateway, StartGateway, raw_connection

from gateway.http.state import BODY_BUDGET

RUNCAST_KEY = "rk-body-admission"
UPSTREAM_KEY = "sk-upstream-held-by-runcast"


async def exchange(gateway: Gateway, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; its answer (head and body, by Content-Length),
    without waiting for the connection to close."""
    reader, writer = await raw_connection(gateway.url)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(request)
            await writer.drain()
            top = await reader.readuntil(b"\r\n\r\n")
            length = int(top.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            return top + await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


def head(method: str, path: str, *, length: int | None, extra: str = "") -> bytes:
    size = "Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"{size}{extra}\r\n"
    ).encode()


def answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), headers, orjson.loads(body)["error"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "credential", "status", "code"),
    [
        ("/v1/threads/runs", None, 401, "invalid_api_key"),
        ("/v1/chat/completions", "Bearer not-a-runcast-key", 401, "invalid_api_key"),
        ("/tokens", None, 401, "invalid_api_key"),
    ],
)
async def test_a_refused_caller_is_answered_before_its_body_arrives(
    start_gateway: StartGateway, path: str, credential: str | None, status: int, code: str
) -> None:
    # runcast holds the upstream key: only its own keys may send bodies to /v1 and /tokens.
    gateway = await start_gateway(upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,))
    extra = f"Authorization: {credential}\r\n" if credential else ""
    # 1 MiB announced, 10 bytes sent, then silence: the answer must not wait for the rest.
    raw = await exchange(gateway, head("POST", path, length=1 << 20, extra=extra) + b'{"model":')
    got_status, headers, error = answer(raw)
    assert (got_status, error["code"]) == (status, code)
    assert headers["Connection"] == "close"
    assert gateway.app[BODY_BUDGET].held == 0


@pytest.mark.asyncio
async def test_expect_100_continue_comes_only_after_the_size_and_the_caller_are_checked(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(
        upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,), max_body_bytes=1024
    )
    expect = "Expect: 100-continue\r\n"
    key = f"Authorization: Bearer {RUNCAST_KEY}\r\n"
    # Refused callers and sizes get their answer instead of the go-ahead to upload.
    for request, status in (
        (head("POST", "/v1/threads/runs", length=1000, extra=expect), 401),
        (head("POST", "/tokens", length=1000, extra=expect), 401),
        (head("POST", "/v1/threads", length=4096, extra=expect + key), 413),
    ):
        got_status, headers, _ = answer(await exchange(gateway, request))
        assert got_status == status and headers["Connection"] == "close"
    # An admitted body gets its 100 Continue, then its answer.
    body = b'{"channel": "channel:expect"}'
    reader, writer = await raw_connection(gateway.url)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(head("POST", "/tokens", length=len(body), extra=expect + key))
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            top = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    assert top.startswith(b"HTTP/1.1 200 ")
    assert gateway.app[BODY_BUDGET].held == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokens"])
async def test_an_unknown_expectation_is_a_json_417(start_gateway: StartGateway, path: str) -> None:
    # aiohttp's own 417 was text/plain: the SDKs could not read it as an API error.
    gateway = await start_gateway(
        upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,), max_body_bytes=1024
    )
    extra = f"Expect: 200-ok\r\nAuthorization: Bearer {RUNCAST_KEY}\r\n"
    status, headers, error = answer(
        await exchange(gateway, head("POST", path, length=2, extra=extra) + b"{}")
    )
    assert status == 417 and headers["Content-Type"].startswith("application/json")
    assert error["code"] == "expectation_failed" and error["type"] == "invalid_request_error"
    assert headers["Connection"] == "close"  # the body is never read
    assert gateway.app[BODY_BUDGET].held == 0


@pytest.mark.asyncio
async def test_a_declared_length_over_the_limit_is_refused_at_once(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(max_body_bytes=1024)
    raw = await exchange(gateway, head("POST", "/v1/chat/completions", length=50 << 20))
    status, headers, error = answer(raw)
    assert (status, error["code"]) == (413, "body_too_large")
    assert "52428800 bytes declared" in error["message"]
    assert headers["Connection"] == "close"


@pytest.mark.asyncio
async def test_stalled_uploads_past_the_body_buffer_get_a_503_and_release_it(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(body_buffer_bytes=3000, body_timeout=1.0)
    budget = gateway.app[BODY_BUDGET]
    stalled = []
    for _ in range(2):  # 2 x 1,000 bytes announced, 1 byte sent: held until --body-timeout
        reader, writer = await raw_connection(gateway.url)
        writer.write(head("POST", "/v1/chat/completions", length=1000) + b"{")
        stalled.append((reader, writer))
    async with asyncio.timeout(WAIT):
        while budget.held < 2000:
            await asyncio.sleep(0.01)
    # A third body would pass the buffer: refused before any of it is read, not queued.
    raw = await exchange(gateway, head("POST", "/v1/chat/completions", length=1001))
    status, headers, error = answer(raw)
    assert (status, error["code"], headers["Retry-After"]) == (503, "server_busy", "1")
    assert budget.held == 2000
    for reader, writer in stalled:
        async with asyncio.timeout(WAIT):
            assert (await reader.read()).startswith(b"HTTP/1.1 408 ")
        writer.close()
    assert budget.held == 0
    # A chunked body has no declared size: it holds the whole --max-body-bytes (4 MiB by
    # default, over this buffer) while it comes, so here it cannot start.
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    raw = await exchange(gateway, head("POST", "/v1/chat/completions", length=None) + chunked)
    assert answer(raw)[0] == 503
    assert budget.held == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/threads/runs", "/tokens"])
async def test_a_body_that_is_not_its_content_encoding_is_a_400(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture, encoding: str, path: str
) -> None:
    gateway = await start_gateway(api_keys=(RUNCAST_KEY,))
    body = b'{"model": "gpt-4o", "stream": true}'  # plain bytes, labelled compressed
    extra = f"Content-Encoding: {encoding}\r\nAuthorization: Bearer {RUNCAST_KEY}\r\n"
    with caplog.at_level(logging.WARNING):
        raw = await exchange(gateway, head("POST", path, length=len(body), extra=extra) + body)
    status, _, error = answer(raw)
    assert (status, error["code"]) == (400, "malformed_body")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # A body that is what it says still goes through.
    packed = gzip.compress(orjson.dumps({"channel": "thread:thread_x", "ttl": 60}))
    extra = (
        f"Content-Encoding: gzip\r\nAuthorization: Bearer {RUNCAST_KEY}\r\nConnection: close\r\n"
    )
    raw = await exchange(gateway, head("POST", "/tokens", length=len(packed), extra=extra) + packed)
    assert raw.startswith(b"HTTP/1.1 200 ")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/streams/threads/thread_x", "/streams/runs/run_x/snapshot", "/v1/models"]
)
async def test_a_credential_that_is_not_utf8_is_a_401(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    gateway = await start_gateway(
        upstream_key=UPSTREAM_KEY, api_keys=(RUNCAST_KEY,), subscribe_auth="token"
    )
    request = b"GET %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xe9\xff\r\n\r\n" % (
        path.encode()
    )
    with caplog.at_level(logging.WARNING):
        raw = await exchange(
            gateway, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        )
    status, _, error = answer(raw)
    assert status == 401, error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
