"""Real 127.0.0.1 servers (and their scripted answers) for the upstream client tests.

``FakeUpstream`` is an aiohttp app whose answers each test scripts per (method, path) and which
records every request it receives. ``RawServer`` speaks HTTP by hand for what aiohttp's server will
not do on purpose: cut a response body mid-way or close a connection without answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.upstream import RunStream, StreamItem, UpstreamSettings
from gateway.upstream.transport import UpstreamResponse

DATA = Path(__file__).resolve().parents[2] / "data" / "upstream"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    raw_query: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class FakeUpstream:
    """Answers scripted per route; a route's handlers are used in turn, the last one repeats."""

    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[tuple[str, str], list[Handler]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def route(self, method: str, path: str, *handlers: Handler) -> None:
        self.routes[(method, "/v1" + path)] = list(handlers)

    def hits(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1" + path]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.raw_path.split("?")[0],
                request.raw_path.partition("?")[2],
                request.headers,
                body,
            )
        )
        handlers = self.routes.get((request.method, request.path))
        if not handlers:
            return json_response(
                404,
                {
                    "error": {
                        "message": "no route",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        handler = handlers.pop(0) if len(handlers) > 1 else handlers[0]
        return await handler(request)


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(obj), content_type="application/json", headers=headers
    )


def reply_json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return json_response(status, obj, headers)

    return handler


def reply_sse(
    body: bytes,
    *,
    chunks: Sequence[int] | None = None,
    stall_before: float = 0.0,
    stall_at: int | None = None,
    stall_for: float = 0.0,
) -> Handler:
    """Stream ``body`` as SSE, cut into pieces of the sizes in ``chunks`` (cycled; whole if None).

    ``stall_before`` delays the first body byte (after the headers); ``stall_at`` pauses for
    ``stall_for`` seconds once that many bytes were written.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        if stall_before:
            await asyncio.sleep(stall_before)
        for piece in split(body, chunks):
            pos = resp.body_length
            if stall_at is not None and pos <= stall_at < pos + len(piece):
                head, tail = piece[: stall_at - pos], piece[stall_at - pos :]
                if head:
                    await resp.write(head)
                await asyncio.sleep(stall_for)
                piece = tail
            await resp.write(piece)
        await resp.write_eof()
        return resp

    return handler


def stall_headers(seconds: float) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="late")

    return handler


def split(body: bytes, sizes: Sequence[int] | None) -> list[bytes]:
    if not sizes:
        return [body]
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        out.append(body[pos : pos + n])
        pos += n
        i += 1
    return out


SHORT_TIMEOUTS: dict[str, Any] = {"first_byte_timeout": 0.3, "idle_timeout": 0.3}
"""For the tests of the timeouts themselves; every other test gets ample ones (a loaded CI
machine can hold a loopback answer back for longer than 0.3 s)."""


def make_settings(base_url: str, **overrides: Any) -> UpstreamSettings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "api_key": "sk-settings-key",
        "connect_timeout": 5.0,
        "first_byte_timeout": 10.0,
        "idle_timeout": 10.0,
        "backoff_base": 0.01,
        "backoff_max": 0.02,
    }
    values.update(overrides)
    return UpstreamSettings(**values)


Script = Callable[[bytes, bytes], bytes]


class RawServer:
    """A TCP server answering each connection with ``script(request_head, body) -> bytes``.

    The returned bytes are written and the connection closed right away, so a script returning a
    partial response (or nothing) cuts the body (or never answers).
    """

    def __init__(self, script: Callable[[bytes, bytes], bytes]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            self.requests.append(head + body)
            writer.write(self.script(head, body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def chunked(*pieces: bytes, final: bool = True) -> bytes:
    """A chunked HTTP/1.1 200 SSE response made of ``pieces``; without ``final`` it is cut."""
    out = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    ]
    out += [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p]
    if final:
        out.append(b"0\r\n\r\n")
    return b"".join(out)


def until_close(body: bytes) -> bytes:
    """An SSE response without length or chunking: its body ends when the connection closes."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body


RawServerFactory = Callable[[Script], Awaitable[RawServer]]


async def collect(stream: RunStream) -> list[StreamItem]:
    """Every item of a run stream, in order."""
    return [item async for item in stream]


COMMENTS = b": keep\n" * (4 * 1024 * 1024 // 7)
"""4 MiB of SSE comment lines: tens of KB gzipped, which aiohttp hands out decompressed in large
buffered pieces that read at once."""


def reply_gzip(body: bytes) -> Handler:
    """Answer ``body`` as SSE, gzip-compressed (``Content-Encoding: gzip``)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=gzip.compress(body, compresslevel=1),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )

    return handler


@contextlib.asynccontextmanager
async def loop_turns(patch: Any) -> AsyncIterator[list[int]]:
    """Within the block a task counts the event loop's turns, and every upstream read records
    the count it saw (``patch``: pytest's monkeypatch)."""
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    seen: list[int] = []
    real = UpstreamResponse.read_chunk

    async def counted(self: UpstreamResponse) -> bytes:
        seen.append(turns)
        return await real(self)

    patch.setattr(UpstreamResponse, "read_chunk", counted)
    task = asyncio.create_task(ticker())
    try:
        yield seen
    finally:
        task.cancel()


def turns_between_reads(seen: Sequence[int]) -> bool:
    """Whether the loop ran other tasks between every two reads :func:`loop_turns` saw."""
    return len(seen) > 3 and all(b > a for a, b in itertools.pairwise(seen))
