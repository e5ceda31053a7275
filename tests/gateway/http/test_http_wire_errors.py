"""Requests refused at the wire, over a raw socket: an HTTP version runcast does not serve, a
WebSocket upgrade with a non-ASCII key, and heads too malformed to parse whose bytes carry a
secret. Each gets a JSON 400 and no traceback; nothing of the request comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp.web_protocol import _ErrInfo
from http_helpers import WAIT, Gateway, StartGateway, raw_connection

pytestmark = pytest.mark.asyncio

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3aXJlIn0.SECRET-SUBSCRIBE-TOKEN"
KEY = "rk-SECRET-CALLER-KEY-0001"


async def _answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """The next answer on a connection: status line, headers (lower-case names), body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.removesuffix("\r\n\r\n").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return status_line, headers, await reader.readexactly(int(headers["content-length"]))


async def _exchange(gateway: Gateway, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a fresh connection; its answer, which the server must follow with
    closing the connection."""
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(request)
        async with asyncio.timeout(WAIT):
            answer = await _answer(reader)
            assert await reader.read() == b"", "the connection stayed open after the answer"
    finally:
        writer.close()
    return answer


def _error(body: bytes) -> dict[str, str]:
    error: dict[str, str] = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    return error


def _quiet(records: list[logging.LogRecord]) -> None:
    """No ERROR line and no traceback, at most one warning line."""
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in records if r.levelno == logging.WARNING]) <= 1


@pytest_asyncio.fixture
async def gateway(start_gateway: StartGateway, caplog: pytest.LogCaptureFixture) -> Gateway:
    """runcast on its defaults, its log captured from here on (not the open-mode warning at
    start)."""
    started = await start_gateway()
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    return started


CREATOR_BODY = orjson.dumps({"model": "gpt-4o", "input": "hi", "stream": True})

OTHER_VERSIONS = {
    # The hub's SSE response is chunked for HTTP/1.1 and up: aiohttp raised on HTTP/2.0.
    "subscriber HTTP/2.0": b"GET /streams/channels/wire HTTP/2.0\r\nHost: localhost\r\n\r\n",
    "subscriber HTTP/0.9": b"GET /streams/channels/wire HTTP/0.9\r\nHost: localhost\r\n\r\n",
    "creator HTTP/2.0": b"POST /v1/responses HTTP/2.0\r\nHost: localhost\r\n"
    b"Authorization: Bearer sk-caller\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(CREATOR_BODY), CREATOR_BODY),
    "probe HTTP/0.9": b"GET /healthz HTTP/0.9\r\nHost: localhost\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", OTHER_VERSIONS.values(), ids=OTHER_VERSIONS.keys())
async def test_other_http_versions_get_a_400_in_http11_and_the_connection_closes(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    status_line, headers, body = await _exchange(gateway, request_bytes)
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close"
    error = _error(body)
    assert error["code"] == "malformed_request"
    version = request_bytes.split(b"\r\n", 1)[0].rsplit(b" ", 1)[1].decode()
    assert version in error["message"]
    _quiet(caplog.records)
    assert gateway.broker.statistics().subscribers == 0


async def test_http10_is_still_served(gateway: Gateway) -> None:
    status_line, _, body = await _exchange(
        gateway, b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    assert status_line == "HTTP/1.0 200 OK"
    assert orjson.loads(body) == {"status": "ok"}


async def test_a_non_ascii_websocket_key_gets_invalid_websocket_and_leaves_nothing_behind(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(
            b"GET /streams/channels/wire HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: \xe9\xff\r\n\r\n"
        )
        async with asyncio.timeout(WAIT):
            status_line, _, body = await _answer(reader)
            assert status_line == "HTTP/1.1 400 Bad Request"
            assert _error(body)["code"] == "invalid_websocket"
            # Refused like any other bad handshake: the connection still serves requests.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert (await _answer(reader))[0] == "HTTP/1.1 200 OK"
    finally:
        writer.close()
    _quiet(caplog.records)
    assert gateway.broker.statistics().subscribers == 0
    assert gateway.connections.by_transport() == {"sse": 0, "websocket": 0}


PAD = "a" * 9000  # past aiohttp's 8190-byte limit on the request line and on a header
SECRET_HEADS = {
    "token in a long URL": f"GET /streams/channels/wire?token={TOKEN}&pad={PAD} HTTP/1.1\r\n"
    "Host: localhost\r\n\r\n",
    "key in a long header": f"GET /streams/channels/wire HTTP/1.1\r\nHost: localhost\r\n"
    f"Authorization: Bearer {KEY}{PAD}\r\n\r\n",
    "key before a control character": "GET /streams/channels/wire HTTP/1.1\r\nHost: localhost\r\n"
    f"Authorization: Bearer {KEY}\x01\r\n\r\n",
    "token in a URL without a host": f"GET http://?token={TOKEN} HTTP/1.1\r\nHost: localhost\r\n\r\n",
    # Credentials no redaction pattern knows, in a header made malformed by a control character.
    "basic credentials": "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
    "Authorization: Basic dXNlcjpTRUNSRVQ=SECRET\x01\r\n\r\n",
    "api-key header": "GET /healthz HTTP/1.1\r\nHost: localhost\r\napi-key: AZURE-SECRET-1\x01\r\n\r\n",
    "cookie": "GET /healthz HTTP/1.1\r\nHost: localhost\r\nCookie: session=SECRET42\x01\r\n\r\n",
    "bearer after a tab": "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
    "Authorization: Bearer\tMY-SECRET-KEY\x01\r\n\r\n",
}


@pytest.mark.parametrize("head", SECRET_HEADS.values(), ids=SECRET_HEADS.keys())
async def test_a_malformed_head_is_not_echoed_in_the_answer(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, head: str
) -> None:
    status_line, headers, body = await _exchange(gateway, head.encode())
    assert status_line.split(" ", 2)[1] == "400"
    error = _error(body)
    assert error["code"] == "malformed_request"
    answer = status_line + repr(headers) + body.decode()
    assert "SECRET" not in answer
    if PAD in head:
        assert "longer than 8190 bytes" in error["message"]
    _quiet(caplog.records)
    # Nor is it in the log, in any form: not left to a redaction pattern to find.
    assert not [r for r in caplog.records if "SECRET" in r.getMessage()]


async def test_junk_after_a_subscriptions_head_is_dropped_not_queued(gateway: Gateway) -> None:
    # aiohttp parsed every read after the junk's start again and queued an error quoting all it
    # had buffered, up to 32 of them while the subscription ran: 15 MB held per connection from
    # 12 MB of junk, in cycles only the collector frees.
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(b"GET /streams/channels/junk HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            for _ in range(32):
                writer.write(b"J" * 65536)
                await writer.drain()
            await asyncio.sleep(0.2)
        server = gateway.runner.server
        assert server is not None
        errors = [
            message
            for handler in server.connections
            for message, _ in handler._messages
            if isinstance(message, _ErrInfo)
        ]
        assert len(errors) == 1
        assert len(errors[0].message) <= 1024 and errors[0].exc.__traceback__ is None
        assert gateway.broker.statistics().subscribers == 1
    finally:
        writer.close()


async def test_an_http10_subscription_ends_with_its_connection(gateway: Gateway) -> None:
    # Unchunked, its body ends with the connection: a 1.0 client asking for keep-alive waited
    # 30 s for the rest of a finished stream, and read the next answer as part of it.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.url}/v1/responses",
            json={"model": "gpt-4o", "input": "hi", "stream": True},
            headers={"Authorization": "Bearer sk-caller"},
        ) as created,
    ):
        response_id = created.headers["runcast-response-id"]
        await created.read()
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(
            f"GET /streams/responses/{response_id}?since=0 HTTP/1.0\r\nHost: localhost\r\n"
            "Connection: keep-alive\r\n\r\n".encode()
        )
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    # HTTP/1.0: without `Connection: keep-alive` in the answer, the connection closes.
    assert head.startswith(b"HTTP/1.0 200") and b"keep-alive" not in head.lower()
    assert b"response.completed" in body


def _masked_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    """A client's frame (RFC 6455 §5.2), masked with a zero key, payload under 126 bytes."""
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def test_endless_empty_fragments_get_a_websocket_cut(gateway: Gateway) -> None:
    # aiohttp hands no message over until a fragmented one ends, so the frame budget never saw
    # these: one connection held the event loop with 8 million of them a second.
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(
            b"GET /streams/channels/wire HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        async with asyncio.timeout(WAIT):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            while gateway.broker.statistics().subscribers != 1:
                await asyncio.sleep(0.01)
            writer.write(_masked_frame(0x1, b"x", fin=False))
            burst = _masked_frame(0x0, b"", fin=False) * 50_000  # 300 KB: 50,000 frames
            with contextlib.suppress(ConnectionError):
                while not reader.at_eof():
                    writer.write(burst)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.01):
                            await reader.read(65536)
            # The subscription ends first, the handler (whose exit the count follows) after it.
            while gateway.broker.statistics().subscribers != 0 or any(
                gateway.connections.by_transport().values()
            ):
                await asyncio.sleep(0.01)
    finally:
        writer.close()


UPGRADE = (
    b"Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "status_line", "code"),
    [
        (
            b"GET /streams/channels/wire HTTP/1.1\r\n"
            + UPGRADE
            + b"Sec-WebSocket-Version: 8\r\n\r\n",
            "HTTP/1.1 426 Upgrade Required",
            "unsupported_websocket_version",
        ),
        (
            b"GET /streams/channels/wire HTTP/1.0\r\n"
            + UPGRADE
            + b"Sec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "invalid_websocket",
        ),
        (
            b"HEAD /streams/channels/wire HTTP/1.1\r\n"
            + UPGRADE
            + b"Sec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            None,  # a HEAD answer has no body
        ),
    ],
    ids=["version 8", "HTTP/1.0", "HEAD"],
)
async def test_upgrades_rfc_6455_rules_out_are_refused(
    gateway: Gateway, request_bytes: bytes, status_line: str, code: str | None
) -> None:
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(request_bytes)
        async with asyncio.timeout(WAIT):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.removesuffix("\r\n\r\n").split("\r\n")
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
            assert lines[0] == status_line
            if code is not None:
                body = await reader.readexactly(int(headers["content-length"]))
                assert _error(body)["code"] == code
            if code == "unsupported_websocket_version":
                assert headers["sec-websocket-version"] == "13"
    finally:
        writer.close()
    assert gateway.broker.statistics().subscribers == 0
