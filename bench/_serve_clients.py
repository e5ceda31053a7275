"""The serve benchmark's subscriber processes: aiohttp SSE and WebSocket clients on one channel.

Each process holds its share of the N subscribers and answers the driver over two one-way pipes.
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

import aiohttp
import uvloop

BUCKET_NS = 10_000
_SSE_ID = re.compile(rb"(?m)^id: (?:\w+-)?(\d+)$")


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
            table.extend(bytes(8 * (last + 1 - len(table) + 1024)))
        for s in range(max(self.max_seen + 1, first), last + 1):
            table[s] = now
        self.max_seen = last


class Subscriber:
    """One subscriber connection's seq bookkeeping."""

    __slots__ = ("cut", "last_at", "next_seq", "ready", "stall_ns", "task")

    def __init__(self) -> None:
        self.ready = False
        self.cut = False
        self.next_seq = 1
        self.last_at = 0
        self.stall_ns = 0
        self.task: asyncio.Task[None] | None = None

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


class ClientState:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.subscribers: list[Subscriber] = []
        self.records = Records()
        self.ready = 0
        self.failed: list[str] = []
        self.all_ready = asyncio.Event()
        self.target = 0


async def _sse(state: ClientState, sub: Subscriber, url: str) -> None:
    assert state.session is not None
    async with state.session.get(url, headers={"Accept": "text/event-stream"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        _mark_ready(state, sub)
        tail = b""
        async for chunk in resp.content.iter_any():
            now = time.monotonic_ns()
            buf = tail + chunk
            end = buf.rfind(b"\n\n")
            if end < 0:
                tail = buf
                continue
            tail = buf[end + 2 :]
            ids = _SSE_ID.findall(buf, 0, end + 2)
            if ids:
                sub.receive(state.records, now, list(map(int, ids)))
    sub.cut = True


async def _ws(state: ClientState, sub: Subscriber, url: str) -> None:
    assert state.session is not None
    async with state.session.ws_connect(url, autoping=True, max_msg_size=0) as ws:
        _mark_ready(state, sub)
        async for msg in ws:
            now = time.monotonic_ns()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data: str = msg.data
            # the hub's frame: {"epoch":"e","seq":n,"event":...}; notices have "seq":null
            at = data.find('"seq":', 0, 100) + 6
            if at > 5 and data[at] != "n":
                sub.receive(state.records, now, [int(data[at : data.index(",", at)])])
    sub.cut = True


def _mark_ready(state: ClientState, sub: Subscriber) -> None:
    sub.ready = True
    state.ready += 1
    if state.ready + len(state.failed) >= state.target:
        state.all_ready.set()


async def _subscribe(state: ClientState, sub: Subscriber, url: str, transport: str) -> None:
    try:
        await (_ws if transport == "ws" else _sse)(state, sub, url)
    except (aiohttp.ClientError, RuntimeError, OSError, TimeoutError) as exc:
        sub.cut = True
        if not sub.ready:
            state.failed.append(f"{type(exc).__name__}: {exc}"[:200])
            if state.ready + len(state.failed) >= state.target:
                state.all_ready.set()


async def _connect(
    state: ClientState, url: str, transport: str, n: int, timeout: float
) -> dict[str, Any]:
    timeout_cfg = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=None)
    state.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=timeout_cfg
    )
    state.target = n
    t0 = time.monotonic_ns()
    for _ in range(n):
        sub = Subscriber()
        sub.task = asyncio.create_task(_subscribe(state, sub, url, transport))
        state.subscribers.append(sub)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
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
    tasks = [s.task for s in state.subscribers if s.task is not None]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if state.session is not None:
        await state.session.close()


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
                _, url, transport, n, timeout = cmd
                state = ClientState()
                answers.send(await _connect(state, url, transport, n, timeout))
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
