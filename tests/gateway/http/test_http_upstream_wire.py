"""An upstream whose answers break HTTP itself: runcast answers its caller with a clean error in
the OpenAI shape, never with the upstream key, a 500 or an answer its client cannot parse.

The upstream is a raw TCP server (aiohttp cannot write what these cases need): each connection
reads one request head and its body, then gets the scripted bytes and is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import pytest_asyncio
from http_helpers import WAIT, Gateway, StartGateway, raw_connection

pytestmark = pytest.mark.asyncio

KEY = "sk-secret-upstream-WIRE-0001"
CALLER = "rk-caller-WIRE"


def _lifecycle(kind: str, seq: int, status: str) -> bytes:
    """A Responses lifecycle event of the response ``resp_w1``, as an SSE block."""
    response = {"id": "resp_w1", "object": "response", "status": status}
    data = orjson.dumps({"type": kind, "sequence_number": seq, "response": response})
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), data)


CREATED = _lifecycle("response.created", 0, "in_progress")


def _answer(content_type: bytes, status: bytes, headers: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\nContent-Type: %s\r\n%sConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, content_type, headers, len(body), body)
    )


def _sse(status: bytes, headers: bytes, body: bytes) -> bytes:
    return _answer(b"text/event-stream", status, headers, body)


def _json(status: bytes, headers: bytes, body: bytes) -> bytes:
    return _answer(b"application/json", status, headers, body)


BROKEN_HTTP = {
    # aiohttp's error for these quoted the request it had sent, Authorization header and all.
    "a header line past 8 KiB": _json(b"200 OK", b"X-Big: " + b"a" * 9000 + b"\r\n", b"{}"),
    "Content-Length with chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "a status line that is no status line": b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\n{}",
    # Passed on as they came: a status line the caller's client cannot parse, or a 101 with no
    # protocol switched.
    "status 099": _json(b"099 Low", b"", b"{}"),
    "status 101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n",
    "status 600": _json(b"600 Beyond", b"", b"{}"),
}


class RawUpstream:
    """Answers every connection with ``answer`` and closes it."""

    def __init__(self) -> None:
        self.answer: bytes = b""
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            writer.write(self.answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    server = RawUpstream()
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture
async def gateway(
    start_gateway: StartGateway, upstream: RawUpstream, caplog: pytest.LogCaptureFixture
) -> Gateway:
    started = await start_gateway(upstream_url=upstream.url, upstream_key=KEY, api_keys=(CALLER,))
    caplog.clear()
    return started


async def _ask(gateway: Gateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (``Connection: close``); the status, headers and whole body read back,
    which must parse as HTTP/1.1 with a Content-Length or chunked body."""
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(request)
        async with asyncio.timeout(WAIT):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", status_line)
    assert match, f"not an HTTP/1.1 status line: {status_line!r}"
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunked(body)
    else:
        assert len(body) == int(headers["content-length"]), (headers, body)
    return int(match.group(1)), headers, body


def _dechunked(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def _get(path: str) -> bytes:
    return (
        f"GET /v1/{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {CALLER}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def _post_stream(path: str, body: dict[str, object]) -> bytes:
    data = orjson.dumps({**body, "stream": True})
    return (
        f"POST /v1/{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {CALLER}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


CALLS: dict[str, Callable[[], bytes]] = {
    "passthrough": lambda: _get("models"),
    "responses stream": lambda: _post_stream("responses", {"model": "m", "input": "hi"}),
    "chat stream": lambda: _post_stream(
        "chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    ),
    "run stream": lambda: _post_stream("threads/thread_w/runs", {"assistant_id": "asst_w"}),
}


def _no_error_lines(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("answer", BROKEN_HTTP.values(), ids=BROKEN_HTTP.keys())
async def test_an_answer_that_is_not_http_is_a_502_without_the_key(
    gateway: Gateway,
    upstream: RawUpstream,
    caplog: pytest.LogCaptureFixture,
    call: Callable[[], bytes],
    answer: bytes,
) -> None:
    upstream.answer = answer
    status, headers, body = await _ask(gateway, call())
    assert status == 502, body
    assert orjson.loads(body)["error"]["code"] == "upstream_unavailable"
    assert KEY.encode() not in body and KEY not in repr(headers)
    _no_error_lines(caplog)


CONTROL = b"x-request-id: a\x7fb\r\nx-ratelimit-remaining-requests: \x019\r\n"


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (_get("models"), _json(b"200 OK", CONTROL, b'{"data":[]}')),
        (
            _post_stream("responses", {"model": "m", "input": "hi"}),
            _sse(b"200 OK", CONTROL, CREATED),
        ),
    ],
    ids=["passthrough", "responses stream"],
)
async def test_upstream_header_values_with_control_characters_are_left_behind(
    gateway: Gateway,
    upstream: RawUpstream,
    caplog: pytest.LogCaptureFixture,
    call: bytes,
    answer: bytes,
) -> None:
    # aiohttp refuses to write them: the caller got a 500 framed as both Content-Length and
    # chunked, or its connection closed without an answer.
    upstream.answer = answer
    status, headers, body = await _ask(gateway, call)
    assert "x-request-id" not in headers and "x-ratelimit-remaining-requests" not in headers
    if b"text/event-stream" in answer:
        assert status == 200 and b"response.created" in body
    else:
        assert (status, orjson.loads(body)) == (200, {"data": []})
    _no_error_lines(caplog)


async def test_a_401_streamed_as_sse_is_replaced_like_any_401(
    gateway: Gateway, upstream: RawUpstream
) -> None:
    # Its body quotes part of the key, which no masking of the whole key catches.
    quoted = b'data: {"error":{"message":"Incorrect API key provided: sk-secr****0001"}}\n\n'
    upstream.answer = _sse(b"401 Unauthorized", b"", quoted)
    status, _, body = await _ask(gateway, _get("models"))
    assert status == 401
    assert orjson.loads(body)["error"]["code"] == "upstream_key_rejected"
    assert b"0001" not in body


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("first", [True, False], ids=["first event", "after created"])
async def test_an_event_nested_past_the_stack_is_relayed_as_undecodable(
    gateway: Gateway, upstream: RawUpstream, caplog: pytest.LogCaptureFixture, first: bool
) -> None:
    deep = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","x":%s}\n\n'
    )
    completed = _lifecycle("response.completed", 2, "completed")
    events = (b"" if first else CREATED) + deep % DEEP + completed
    upstream.answer = _sse(b"200 OK", b"", events)
    status, _, body = await _ask(gateway, CALLS["responses stream"]())
    assert status == 200
    # The last event relayed is the upstream's end (with the id line runcast adds).
    assert body.rstrip().endswith(completed.rstrip().split(b"\n")[-1]), body[-300:]
    _no_error_lines(caplog)


async def test_a_stream_of_undecodable_events_logs_a_few_lines_not_one_each(
    gateway: Gateway, upstream: RawUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # 1,000 events of `data: 1` wrote 1,000 warnings (a million: 100 MB of log, the loop held
    # for seconds): the first, then the 10th, the 100th... with the count so far.
    junk = b"data: 1\n\n" * 1_000
    completed = _lifecycle("response.completed", 2, "completed")
    upstream.answer = _sse(b"200 OK", b"", CREATED + junk + completed)
    status, _, body = await _ask(gateway, CALLS["responses stream"]())
    assert status == 200 and body.count(b"data: 1\n") == 1_000
    lines = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 4, lines
    assert lines[-1].endswith("(1000 so far)"), lines
