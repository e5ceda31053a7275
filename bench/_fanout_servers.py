"""The fan-out benchmark's two servers (runcast's hub on aiohttp, and the bare-socket ceiling),
each run in its own process pinned to one CPU."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fanout_common import CHANNEL, EVENT_NAME, WS_GUID, payload, pin, rss_bytes

from gateway.hub import (
    FrameFormat,
    HubEvent,
    HubSettings,
    MemoryBroker,
    frames,
    serve_subscriber,
)
from gateway.metrics import NO_METER, Metrics

# -- servers ------------------------------------------------------------------------------------

_EPOCH = "3f9a1c07"
"""An epoch of the hub's length, so the ceiling writes frames the size of the hub's."""


class RuncastServer:
    """runcast's hub; with ``metrics`` also what ``--metrics on`` adds to a relay: a
    :class:`~gateway.metrics.RunMeter` hook per batch of upstream events (count, sampled delivery
    lag) and a scrape of the whole registry every second (Prometheus scrapes every 15 s)."""

    def __init__(self, *, metrics: bool = False) -> None:
        n = 1_000_000
        self.broker = MemoryBroker(
            HubSettings(
                max_subscribers=n,
                max_subscribers_per_channel=n,
                heartbeat_interval=0,
                sweep_interval=1.0,
            )
        )
        self.runner: Any = None
        self.metrics = Metrics() if metrics else None
        self.meter = self.metrics.meter("assistants") if self.metrics else NO_METER
        self.scraper: asyncio.Task[None] | None = None

    async def start(self) -> int:
        from aiohttp import web

        broker = self.broker

        async def handler(request: web.Request) -> web.StreamResponse:
            return await serve_subscriber(request, broker, CHANNEL, create=True)

        app = web.Application()
        app.router.add_get("/sub", handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        if self.metrics is not None:
            self.metrics.watch(_HubSources(broker))
            self.scraper = asyncio.create_task(_scrape(self.metrics))
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def subscribers(self) -> int:
        return self.broker.statistics().subscribers

    def stats(self) -> dict[str, int]:
        s = self.broker.statistics()
        return {"lagged": s.lagged, "disconnected": s.disconnected}

    async def publish(self, events: list[HubEvent]) -> None:
        meter = self.meter
        opened = meter.opened()
        sampled = meter.batch(opened, len(events))
        await self.broker.publish([CHANNEL], events)
        meter.delivered(sampled)

    async def stop(self) -> None:
        if self.scraper is not None:
            self.scraper.cancel()
            await asyncio.wait([self.scraper])
        await self.broker.aclose()
        await self.runner.cleanup()


class _HubSources:
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def runs_active(self) -> int:
        return 1

    def subscribers(self) -> dict[str, int]:
        return {"sse": self._broker.statistics().subscribers}

    def hub(self) -> object:
        return self._broker.statistics()


async def _scrape(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(1.0)
        metrics.exposition()


class _CeilingProtocol(asyncio.Protocol):
    def __init__(self, server: CeilingServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.kind: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.kind is not None:
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        assert self.transport is not None
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", self.head)
        if key:
            accept = base64.b64encode(hashlib.sha1(key.group(1) + WS_GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.kind = "ws"
        else:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            self.kind = "sse"
        self.server.conns[self.kind][self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.kind is not None:
            self.server.conns[self.kind].pop(self, None)


class CeilingServer:
    def __init__(self) -> None:
        self.conns: dict[str, dict[_CeilingProtocol, None]] = {"sse": {}, "ws": {}}
        self.seq = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _CeilingProtocol(self), "127.0.0.1", 0, backlog=4096
        )
        return int(self.server.sockets[0].getsockname()[1])

    def subscribers(self) -> int:
        return len(self.conns["sse"]) + len(self.conns["ws"])

    def stats(self) -> dict[str, int]:
        return {}

    async def publish(self, events: list[HubEvent]) -> None:
        for kind, fmt in (("sse", FrameFormat.SSE_CHUNKED), ("ws", FrameFormat.WEBSOCKET)):
            conns = self.conns[kind]
            if not conns:
                continue
            encoded = [
                frames.encode_batch(fmt, _EPOCH, self.seq + 1 + k, [e])
                for k, e in enumerate(events)
            ]
            transports = [c.transport for c in conns]
            for t in transports:
                for f in encoded:
                    t.write(f)  # type: ignore[union-attr]
        self.seq += len(events)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def server_main(cmds: Connection, conn: Connection, kind: str) -> None:
    pin(0)
    uvloop.run(_server(cmds, conn, kind))


async def _server(cmds: Connection, conn: Connection, kind: str) -> None:
    server: RuncastServer | CeilingServer = (
        CeilingServer() if kind == "ceiling" else RuncastServer(metrics=kind == "metrics")
    )
    port = await server.start()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
    loop.add_reader(cmds.fileno(), lambda: commands.put_nowait(cmds.recv()))
    conn.send(("port", port, rss_bytes()))
    try:
        while True:
            cmd = await commands.get()
            op = cmd[0]
            if op == "status":
                conn.send((server.subscribers(), rss_bytes(), server.stats()))
            elif op == "emit":
                _, n_events, batch, rate, pad_len = cmd
                conn.send(await _emit(server.publish, n_events, batch, rate, b"x" * pad_len))
            elif op == "stop":
                break
    finally:
        loop.remove_reader(cmds.fileno())
        await server.stop()


async def _emit(
    publish: Callable[[list[HubEvent]], Any], n_events: int, batch: int, rate: float, pad: bytes
) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    interval = batch / rate if rate else 0.0
    next_at = loop.time()
    t0 = time.time_ns()
    i = 0
    while i < n_events:
        n = min(batch, n_events - i)
        now = time.time_ns()
        await publish([HubEvent(EVENT_NAME, payload(now, i + k, pad)) for k in range(n)])
        i += n
        if interval:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        else:
            await asyncio.sleep(0)
    return t0, time.time_ns()
