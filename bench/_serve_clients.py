"""The serve benchmark's subscriber processes: SSE and WebSocket subscribers of one channel.

Each process holds its share of the N subscribers and answers the driver over two one-way pipes.
Subscribers are bare asyncio protocols on uvloop (an HTTP/1.1 GET, or a WebSocket upgrade, then
the raw bytes scanned for seqs: SSE ``id:`` lines, WebSocket ``{"seq":n,`` payload heads, which
chunked coding and unmasked server frames leave intact), not aiohttp clients: at N = 1,000 and
200 events/s the clients' one CPU must take 200,000 reads/s, and aiohttp's per-read cost made the
clients the bottleneck (the server idled at 0.1-0.2 of a core). Even so these processes saturate
their core at N = 1,000 paced; ``bench/native/subscribers.c`` (``_serve_native.py``) does the same
work in C and is the benchmark's default (``--clients``): these are the reference it is tested
against (``tests/bench/test_serve_clients.py``).
Every delivery is checked by seq (a gap is loss, a repeat a duplicate) and stamped with
``time.monotonic_ns()``: on Linux that is ``CLOCK_MONOTONIC``, one clock for every process on the
machine, so receipts in both client processes and the creator compare directly. Per read the
process keeps one record (receipt time, first seq, last seq) and, per seq, the first receipt seen
here; once the driver has merged the first receipts of every process it sends them back and each
process turns its records into a latency histogram (10 µs buckets), which the driver merges.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import uvloop

BUCKET_NS = 10_000
SSE_ID = re.compile(rb"(?m)^id: (?:[^-\n]+-)?(\d+)$")
SSE_DATA_SEQ = re.compile(rb'(?m)^data: \{"seq":(\d+),')
"""A server that numbers messages its own way (nchan's ``id: <time>:<tag>``): the seq the
publisher put at the head of each message's JSON."""


class Records:
    """One process's receipts of the current run (all of its subscribers)."""

    def __init__(self, final_seq_hint: int = 0) -> None:
        self.times = array("q")
        self.firsts = array("q")
        self.lasts = array("q")
        # first receipt here of seq s at index s (0 = not yet)
        self.first_receipt = array("q", bytes(8 * (final_seq_hint + 2)))
        self.max_seen = 0
        self.deliveries = 0
        self.duplicates = 0
        self.lost = 0

    def note_first(self, now: int, first: int, last: int) -> None:
        if last <= self.max_seen:
            return
        table = self.first_receipt
        if last >= len(table):
            table.frombytes(bytes(8 * (last + 1 - len(table) + 1024)))
        for s in range(max(self.max_seen + 1, first), last + 1):
            table[s] = now
        self.max_seen = last


class Subscriber:
    """One subscriber connection's seq bookkeeping."""

    __slots__ = ("cut", "last_at", "next_seq", "ready", "stall_ns")

    def __init__(self) -> None:
        self.ready = False
        self.cut = False
        self.next_seq = 1
        self.last_at = 0
        self.stall_ns = 0

    def receive(self, rec: Records, now: int, seqs: list[int]) -> None:
        n = len(seqs)
        expected = self.next_seq
        if (
            seqs[0] == expected
            and seqs[-1] == expected + n - 1
            and seqs == list(range(expected, expected + n))
        ):
            self.next_seq = expected + n
            first, last = expected, expected + n - 1
        else:
            fresh: list[int] = []
            for s in seqs:
                if s < self.next_seq:
                    rec.duplicates += 1
                    continue
                if s > self.next_seq:
                    rec.lost += s - self.next_seq
                fresh.append(s)
                self.next_seq = s + 1
            if not fresh:
                return
            first, last = fresh[0], fresh[-1]
        if self.last_at and now - self.last_at > self.stall_ns:
            self.stall_ns = now - self.last_at
        self.last_at = now
        rec.deliveries += last - first + 1
        rec.times.append(now)
        rec.firsts.append(first)
        rec.lasts.append(last)
        rec.note_first(now, first, last)


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
_WS_SEQ = re.compile(rb'"seq":(\d+),"event"')


class ClientState:
    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self.protocols: list[_Sub] = []
        self.records = Records()
        self.ready = 0
        self.failed: list[str] = []
        self.all_ready = asyncio.Event()
        self.target = 0

    def settled(self) -> None:
        if self.ready + len(self.failed) >= self.target:
            self.all_ready.set()


class _Sub(asyncio.Protocol):
    """One subscriber connection: the response head, then seqs scanned out of the raw body."""

    def __init__(
        self,
        state: ClientState,
        sub: Subscriber,
        request: bytes,
        ws: bool,
        sse_seq: re.Pattern[bytes] = SSE_ID,
    ) -> None:
        self.sse_seq = sse_seq
        self.state = state
        self.sub = sub
        self.request = request
        self.ws = ws
        self.head: bytes | None = b""
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            self.head = None
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 101")):
                self.state.failed.append(head[: head.find(b"\r\n")].decode(errors="replace"))
                self.state.settled()
                assert self.transport is not None
                self.transport.abort()
                return
            self.sub.ready = True
            self.state.ready += 1
            self.state.settled()
            data = head[end + 4 :]
        buf = self.tail + data
        if self.ws:
            seqs = []
            last = 0
            for m in _WS_SEQ.finditer(buf):
                seqs.append(int(m.group(1)))
                last = m.end()
            self.tail = buf[max(last, len(buf) - 32) :]
        else:
            end = buf.rfind(b"\n\n")
            if end < 0:
                self.tail = buf
                return
            self.tail = buf[end + 2 :]
            seqs = list(map(int, self.sse_seq.findall(buf, 0, end + 2)))
        if seqs:
            self.sub.receive(self.state.records, now, seqs)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sub.cut = True
        if not self.sub.ready and self.head is not None:
            self.state.failed.append(f"closed before the response head: {exc}")
            self.state.settled()


def subscribe_request(url: str, transport: str) -> bytes:
    """The request each subscriber sends (both client kinds): an SSE GET or a WebSocket upgrade
    of ``url``'s path."""
    hostport, path = url.split("://", 1)[1].split("/", 1)
    if transport == "ws":
        return (
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    return (
        f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


async def _connect(
    state: ClientState, url: str, transport: str, n: int, timeout: float, seq_in: str = "id"
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    request = subscribe_request(url, transport)
    state.target = n
    state.settled()  # a process given no subscriber is ready at once

    async def one() -> None:
        sub = Subscriber()
        proto = _Sub(
            state, sub, request, transport == "ws", SSE_DATA_SEQ if seq_in == "data" else SSE_ID
        )
        state.subscribers.append(sub)
        state.protocols.append(proto)
        try:
            await loop.create_connection(lambda: proto, host, int(port))
        except OSError as exc:
            sub.cut = True
            state.failed.append(f"{type(exc).__name__}: {exc}"[:200])
            state.settled()

    t0 = time.monotonic_ns()
    # every connection at once: a connection storm, as when a popular run starts
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one() for _ in range(n)))
            await state.all_ready.wait()
    return {
        "start_ns": t0,
        "end_ns": time.monotonic_ns(),
        "ready": state.ready,
        "failed": state.failed[:5],
        "failures": len(state.failed),
    }


async def _wait(state: ClientState, final_seq: int, timeout: float) -> dict[str, Any]:
    subs = [s for s in state.subscribers if s.ready]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(s.next_seq > final_seq or s.cut for s in subs):
            break
        await asyncio.sleep(0.02)
    rec = state.records
    lost = rec.lost + sum(max(0, final_seq + 1 - s.next_seq) for s in subs)
    return {
        "deliveries": rec.deliveries,
        "lost": lost,
        "duplicates": rec.duplicates,
        "complete": sum(1 for s in subs if s.next_seq > final_seq),
        "cut": sum(1 for s in subs if s.cut and s.next_seq <= final_seq),
        "stall_ns": max((s.stall_ns for s in subs), default=0),
        "last_ns": max(rec.times) if rec.times else 0,
        "first_receipt": rec.first_receipt[: final_seq + 1].tobytes(),
    }


def _latencies(state: ClientState, first_receipt: bytes) -> dict[str, Any]:
    table = array("q")
    table.frombytes(first_receipt)
    rec = state.records
    hist: Counter[int] = Counter()
    worst = 0
    for now, first, last in zip(rec.times, rec.firsts, rec.lasts, strict=True):
        if last >= len(table):
            continue
        worst = max(worst, now - table[first])
        if first == last:
            hist[(now - table[first]) // BUCKET_NS] += 1
        else:
            hist.update((now - table[s]) // BUCKET_NS for s in range(first, last + 1))
    return {"hist": dict(hist), "max_ns": worst}


async def _close(state: ClientState) -> None:
    for p in state.protocols:
        if p.transport is not None:
            p.transport.abort()
    await asyncio.sleep(0.05)


def client_main(cmds: Connection, answers: Connection, cpu: int | None) -> None:
    if cpu is not None:
        import os

        os.sched_setaffinity(0, {cpu})
    uvloop.run(_client(cmds, answers))


async def _client(cmds: Connection, answers: Connection) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
    loop.add_reader(cmds.fileno(), lambda: commands.put_nowait(cmds.recv()))
    state = ClientState()
    try:
        while True:
            cmd = await commands.get()
            op = cmd[0]
            if op == "connect":
                _, url, transport, n, timeout, seq_in = cmd
                state = ClientState()
                answers.send(await _connect(state, url, transport, n, timeout, seq_in))
            elif op == "arm":
                state.records = Records(cmd[1])
                for s in state.subscribers:
                    s.next_seq, s.last_at, s.stall_ns = 1, 0, 0
                answers.send("armed")
            elif op == "wait":
                answers.send(await _wait(state, cmd[1], cmd[2]))
            elif op == "latency":
                answers.send(_latencies(state, cmd[1]))
            elif op == "close":
                await _close(state)
                answers.send("closed")
            elif op == "stop":
                break
    finally:
        loop.remove_reader(cmds.fileno())
        await _close(state)
