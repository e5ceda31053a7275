"""The listening socket over real sockets: head and body deadlines, the connection cap, and
what malformed requests and departing clients leave in the log."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import sys
from pathlib import Path

import aiohttp
import orjson
import psutil
import pytest
from http_helpers import (
    WAIT,
    Gateway,
    StartGateway,
    clean_environ,
    serve_process,
    sse_subscribe,
    stop_with_sigterm,
    subscription_ended,
)

from gateway.hub import HubEvent

pytestmark = pytest.mark.asyncio


def _address(gateway: Gateway) -> tuple[str, int]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _raw(gateway: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*_address(gateway))


def _split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def _healthz(gateway: Gateway) -> int:
    return await _healthz_at(gateway.url)


async def test_a_dribbled_head_is_cut_at_the_header_timeout_while_others_are_served(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(header_timeout=0.5)
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    reader, writer = await _raw(gateway)
    closed = asyncio.create_task(reader.read())
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    try:
        async with asyncio.timeout(WAIT):
            while not closed.done() and sent < len(head):
                try:
                    writer.write(head[sent : sent + 1])
                    await writer.drain()
                except ConnectionError:
                    break
                sent += 1
                if sent == 5:
                    # Another connection meanwhile: a normal request is served at once.
                    assert await _healthz(gateway) == 200
                await asyncio.wait({closed}, timeout=0.05)
            answer = await closed
    finally:
        writer.close()
    elapsed = loop.time() - started
    assert sent < len(head), "the whole head went through: nothing cut the connection"
    assert answer == b""  # closed without an answer: there was no request to answer
    assert 0.4 <= elapsed < 2.5


async def test_an_idle_connection_is_closed_after_the_header_timeout(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(header_timeout=0.3)
    reader, writer = await _raw(gateway)
    try:
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_a_stream_outlives_the_header_timeout(start_gateway: StartGateway) -> None:
    """The head deadline never applies while a handler runs: streams get no total timeout."""
    gateway = await start_gateway(header_timeout=0.2)
    async with aiohttp.ClientSession() as session:
        response, sub = await sse_subscribe(session, f"{gateway.url}/streams/threads/thread_long")
        broker = gateway.broker
        await asyncio.wait({sub}, timeout=0.6)  # three header timeouts pass
        assert not sub.done()
        await broker.publish(["thread:thread_long"], [HubEvent("done", b"[DONE]")])
        record = await subscription_ended(response, sub)
    assert record.names == ["done"]


async def test_a_stalled_body_gets_408_and_the_connection_closes(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(body_timeout=0.5)
    reader, writer = await _raw(gateway)
    loop = asyncio.get_running_loop()
    try:
        writer.write(
            b"POST /v1/threads HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sk-x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        started = loop.time()
        async with asyncio.timeout(WAIT):
            raw = await reader.read()  # the answer, then the end of the connection
    finally:
        writer.close()
    status, headers, body = _split(raw)
    assert status == 408
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "body_timeout"
    assert loop.time() - started < 5


async def test_connections_past_the_cap_get_503_while_open_ones_work(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(max_connections=3)
    async with aiohttp.ClientSession() as session:
        # Three open connections: two streams and one idle keep-alive connection.
        streams = [
            await sse_subscribe(session, f"{gateway.url}/streams/threads/thread_{n}")
            for n in (1, 2)
        ]
        reader, writer = await _raw(gateway)
        try:
            async with (
                aiohttp.ClientSession() as other,
                other.get(f"{gateway.url}/healthz") as refused,
            ):
                assert refused.status == 503
                assert refused.headers["Retry-After"] == "1"
                error = (await refused.json())["error"]
            assert error["code"] == "too_many_connections"
            assert error["type"] == "server_error"
            # The connections already open keep working.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(WAIT):
                assert _split(await reader.read())[0] == 200
        finally:
            writer.close()
        await gateway.broker.publish(
            ["thread:thread_1", "thread:thread_2"], [HubEvent("done", b"[DONE]")]
        )
        for response, sub in streams:
            assert (await subscription_ended(response, sub)).names == ["done"]
    # Once connections close there is room again (the server notices on its own time).
    async with asyncio.timeout(WAIT):
        while await _healthz(gateway) != 200:
            await asyncio.sleep(0.02)


MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
]


async def test_malformed_requests_get_a_json_400_and_at_most_one_warning_line(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway()
    caplog.set_level(logging.DEBUG)
    for request in MALFORMED:
        before = len(caplog.records)
        reader, writer = await _raw(gateway)
        try:
            writer.write(request)
            async with asyncio.timeout(WAIT):
                status, _, body = _split(await reader.read())
        finally:
            writer.close()
        assert status == 400
        assert orjson.loads(body)["error"]["code"] == "malformed_request"
        records = caplog.records[before:]
        assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
        assert len([r for r in records if r.levelno == logging.WARNING]) <= 1
        for record in records:
            assert "\n" not in record.getMessage()


async def test_a_client_leaving_while_headers_are_written_is_logged_once_at_debug(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway()
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    clients = 30
    for n in range(clients):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, _address(gateway))
        await loop.sock_sendall(
            sock, b"GET /streams/threads/thread_%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n
        )
        # SO_LINGER 0: close() sends a reset at once, as a client killed mid-request does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    server = gateway.runner.server
    assert server is not None
    async with asyncio.timeout(WAIT):
        while server.connections:
            await asyncio.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    left = [r for r in caplog.records if "left during" in r.getMessage()]
    assert left, "no client was caught leaving: the test did not exercise the path"
    assert len(left) <= clients
    assert all(r.levelno == logging.DEBUG for r in left)
    assert await _healthz(gateway) == 200


async def test_a_runcast_serve_process_refuses_past_its_cap_and_cuts_silent_heads() -> None:
    """The same on uvloop, in a real ``runcast serve`` (its transports are not asyncio's)."""
    async with serve_process(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        "0",
        "--max-connections",
        "1",
        "--header-timeout",
        "0.5",
        env=clean_environ(),
    ) as (proc, url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        held_reader, held_writer = await asyncio.open_connection(host, int(port))
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                async with asyncio.timeout(WAIT):
                    status, _, body = _split(await reader.read())
            finally:
                writer.close()
            assert status == 503
            assert orjson.loads(body)["error"]["code"] == "too_many_connections"
            # The connection that holds the only place sent nothing: the head deadline frees it.
            async with asyncio.timeout(WAIT):
                assert await held_reader.read() == b""
        finally:
            held_writer.close()
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    if await _healthz_at(url) == 200:
                        break
                except aiohttp.ClientError:
                    pass  # the closed connection may not be counted out yet
                await asyncio.sleep(0.05)
        assert await stop_with_sigterm(proc) == 0


async def _healthz_at(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as r:
        await r.read()
        return r.status


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO of a listening socket is Linux's")
@pytest.mark.parametrize("backlog", [0, 333])
async def test_the_listening_socket_gets_the_backlog(
    start_gateway: StartGateway, backlog: int
) -> None:
    gateway = await start_gateway(backlog=backlog)
    expected = backlog or int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert _max_accept_queue(_address(gateway)[1]) == expected


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP, and Linux drops SYNs past a backlog")
async def test_a_connection_storm_fits_the_backlog_of_a_stopped_runcast_serve() -> None:
    """A few hundred connections complete in the kernel's accept queue while ``runcast serve``
    accepts nothing (stopped); with a small ``--backlog`` the next connect waits for a SYN
    retransmission instead (Linux drops SYNs while the queue is full)."""
    storm = 300
    assert await _connects_until_one_stalls(storm, backlog=storm) == storm
    assert await _connects_until_one_stalls(storm, backlog=8) <= 9 + 1


async def _connects_until_one_stalls(count: int, *, backlog: int) -> int:
    """How many of ``count`` sequential connects to a stopped ``runcast serve --backlog
    backlog`` complete within 0.5 s each (the first SYN retransmission comes after 1 s)."""
    async with serve_process(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        "0",
        "--backlog",
        str(backlog),
        env=clean_environ(),
    ) as (proc, url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        held: list[socket.socket] = []
        loop = asyncio.get_running_loop()
        proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                held.append(sock)
                try:
                    async with asyncio.timeout(0.5):
                        await loop.sock_connect(sock, (host, int(port)))
                except TimeoutError:
                    return len(held) - 1
            return len(held)
        finally:
            for sock in held:
                sock.close()
            proc.send_signal(signal.SIGCONT)
            assert await _healthz_at(url) == 200
            assert await stop_with_sigterm(proc) == 0


def _max_accept_queue(port: int) -> int:
    """The accept backlog of this process's socket listening on ``port``: Linux reports
    ``sk_max_ack_backlog`` as ``tcpi_sacked`` in a listening socket's ``TCP_INFO``."""
    (fd,) = (
        c.fd
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )
    with socket.socket(fileno=os.dup(fd)) as sock:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: 8 one-byte fields, then rto, ato, snd_mss, rcv_mss, unacked, sacked.
    sacked: int = struct.unpack_from("8B6I", info)[13]
    return sacked
