"""The fan-out benchmark's subscriber clients: raw asyncio protocols in separate processes that
count events and sample receive timestamps."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from _fanout_common import CLIENT_PROCS, CONNECT_CONCURRENCY, MARK, TS_RE, WS_KEY, pin

# -- clients ------------------------------------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.expected = 0
        self.completed = 0
        self.ready = 0
        self.total = 0
        self.last_ns = 0
        self.latencies: list[int] = []
        self.done = asyncio.Event()
        self.protocols: list[_SubProtocol] = []


class _SubProtocol(asyncio.Protocol):
    __slots__ = ("count", "counter", "head", "request", "sampled", "tail", "transport")

    def __init__(self, counter: _Counter, request: bytes, sampled: bool) -> None:
        self.counter = counter
        self.request = request
        self.sampled = sampled
        self.head: bytes | None = b""
        self.tail = b""
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        counter = self.counter
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            if not (head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 101")):
                raise RuntimeError(head[:200])
            self.head = None
            counter.ready += 1
            data = head[end + 4 :]
        buf = self.tail + data
        if self.sampled:
            matches = list(TS_RE.finditer(buf))
            lat = counter.latencies
            lat.extend(now - int(m.group(1)) for m in matches)
            n = len(matches)
            last = matches[-1].end() if matches else 0
            self.tail = buf[max(last, len(buf) - 24) :]
        else:
            n = buf.count(MARK)
            self.tail = buf[-3:]
        if n:
            self.count += n
            counter.total += n
            counter.last_ns = now
            if self.count >= counter.expected > 0 and self.count - n < counter.expected:
                counter.completed += 1
                if counter.completed == len(counter.protocols):
                    counter.done.set()


def client_main(cmds: Connection, conn: Connection) -> None:
    pin(1)
    uvloop.run(_client(cmds, conn))


async def _client(cmds: Connection, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
    loop.add_reader(cmds.fileno(), lambda: commands.put_nowait(cmds.recv()))
    counter = _Counter()
    spin = False
    try:
        while True:
            cmd = await commands.get()
            op = cmd[0]
            if op == "connect":
                _, port, transport, n, sample_every, offset = cmd
                counter = _Counter()
                await _connect(counter, port, transport, n, sample_every, offset)
                conn.send(counter.ready)
            elif op == "arm":
                counter.expected = cmd[1]
                spin = cmd[2]
                counter.completed = 0
                counter.total = 0
                counter.last_ns = 0
                counter.latencies = []
                counter.done = asyncio.Event()
                for p in counter.protocols:
                    p.count = 0
                conn.send("armed")
            elif op == "wait":
                try:
                    async with asyncio.timeout(cmd[1]):
                        if spin:
                            # Busy-polling keeps this process on its CPU, so the server's sends
                            # never pay for waking it up (costly IPIs in VMs).
                            while not counter.done.is_set():
                                await asyncio.sleep(0)
                        else:
                            await counter.done.wait()
                except TimeoutError:
                    pass
                conn.send(
                    {
                        "last_ns": counter.last_ns,
                        "complete": counter.completed,
                        "deliveries": counter.total,
                        "latencies": counter.latencies,
                    }
                )
            elif op == "close":
                for p in counter.protocols:
                    if p.transport is not None:
                        p.transport.abort()
                counter = _Counter()
                await asyncio.sleep(0.05)
                conn.send("closed")
            elif op == "stop":
                break
    finally:
        loop.remove_reader(cmds.fileno())


async def _connect(
    counter: _Counter, port: int, transport: str, n: int, sample_every: int, offset: int
) -> None:
    loop = asyncio.get_running_loop()
    if transport == "ws":
        request = (
            "GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    else:
        request = b"GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> None:
        sampled = (offset + i * CLIENT_PROCS) % sample_every == 0
        proto = _SubProtocol(counter, request, sampled)
        async with sem:
            await loop.create_connection(lambda: proto, "127.0.0.1", port)
        counter.protocols.append(proto)

    await asyncio.gather(*(one(i) for i in range(n)))
    deadline = loop.time() + 30
    while counter.ready < n and loop.time() < deadline:
        await asyncio.sleep(0.01)
