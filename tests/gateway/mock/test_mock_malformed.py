"""A client's own misbehaviour on the wire: no traceback in the log, a JSON error where one fits.

Raw asyncio streams send what no HTTP client library would: half a body then a close, a header
line longer than aiohttp's 8190-byte limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import pytest
from mock_helpers import StartMock

pytestmark = pytest.mark.asyncio


async def _connect(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_client_leaving_mid_body_is_one_debug_line(
    start_mock: StartMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_mock()
    _, writer = await _connect(server.base_url)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model":'
    )
    await writer.drain()
    await asyncio.sleep(0.05)  # the handler is reading the body when the client leaves
    writer.close()
    await writer.wait_closed()

    def left() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "left during POST" in r.getMessage()]

    async with asyncio.timeout(5):
        while not left() and not _tracebacks(caplog):
            await asyncio.sleep(0.01)
    assert _tracebacks(caplog) == []
    [record] = left()
    assert record.levelno == logging.DEBUG
    assert "/v1/chat/completions" in record.getMessage()


async def test_a_header_line_too_long_gets_a_json_400_and_no_traceback(
    start_mock: StartMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_mock()
    reader, writer = await _connect(server.base_url)
    secret = b"sk-" + b"a" * 9000
    writer.write(
        b"GET /v1/responses/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nX-A: "
        + secret
        + b"\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()  # to the server's close
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *headers = head.decode("latin-1").split("\r\n")
    assert status_line.split()[1] in ("400", "431")
    fields = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in headers)}
    assert fields["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["code"] == "malformed_request"
    assert "8190" in error["message"]
    assert b"aaaa" not in answer  # the request's bytes are not quoted back
    assert _tracebacks(caplog) == []
    assert not any("aaaa" in r.getMessage() for r in caplog.records)
