"""A forward HTTP proxy, as a corporate egress proxy is to runcast's upstream requests.

A request in absolute form (``POST http://host:port/v1/... HTTP/1.1``) is sent on to that host
in origin form, its ``Proxy-Authorization`` kept here, and the connection then piped both ways
(the later requests of a kept-alive connection go to the same host, as aiohttp's do). ``CONNECT``
is answered 405: these tests reach plain-HTTP upstreams. What each connection asked is recorded.
``names`` maps host names only the proxy knows (as an egress proxy resolves names the gateway's
machine cannot) to local ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Asked:
    method: str
    target: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    names: dict[str, int] = field(default_factory=dict)
    credentials: str | None = None
    """``Proxy-Authorization`` it requires (a 407 to any other), or None."""
    port: int = 0
    asked: list[Asked] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            headers = [line for line in header_lines if line]
            auth = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in headers
                    if line.lower().startswith("proxy-authorization:")
                ),
                None,
            )
            self.asked.append(Asked(method, target, auth))
            if self.credentials is not None and auth != self.credentials:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="egress"\r\ncontent-length: 0\r\n\r\n'
                )
                return
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                return
            parts = urlsplit(target)
            if parts.hostname in self.names:
                host, port = "127.0.0.1", self.names[parts.hostname]
            else:
                host, port = parts.hostname, parts.port or 80
            up_reader, upstream = await asyncio.open_connection(host, port)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = "".join(
                f"{line}\r\n" for line in headers if not line.lower().startswith("proxy-")
            )
            upstream.write(f"{method} {path} {version}\r\n{kept}\r\n".encode("latin-1"))
            async with asyncio.TaskGroup() as pipes:
                pipes.create_task(_pipe(reader, upstream))
                pipes.create_task(_pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            for side in (writer, upstream):
                if side is not None:
                    side.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        if sink.can_write_eof():
            sink.write_eof()
