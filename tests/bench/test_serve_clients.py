"""serve_bench.py's two subscriber client kinds give the same answers on the same bytes.

A scripted server on 127.0.0.1 plays an SSE stream (chunked, events split mid-line and between
their two newlines, ids with and without a prefix, a line that only looks like an id), nchan's
``data: {"seq":n,`` variant, and a WebSocket stream (frames split mid-payload); one path of each
also repeats an event and skips two. The Python client process (``_serve_clients.py``) and the
native one (``bench/native/subscribers.c``, when a C compiler is found) are driven through the
driver's commands; their counts (deliveries, lost, duplicates, complete, cut), the seqs they saw
first and the histogram's total must agree, and match what the script sent.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
from _serve_clients import client_main  # noqa: E402  (found through the line above)
from _serve_native import NativeProc, build, compiler  # noqa: E402
from serve_bench import Proc  # noqa: E402

N = 3
FINAL = 15


def _chunk(b: bytes) -> bytes:
    return f"{len(b):x}\r\n".encode() + b + b"\r\n"


def _sse_event(seq: int, data_mode: bool, id_line: bytes | None = None) -> bytes:
    if id_line is None:
        id_line = f"id: 1700000000:{seq}".encode() if data_mode else f"id: thr_1-{seq}".encode()
    data = f'data: {{"seq":{seq},"event":"thread.message.delta","data":{{}}}}'.encode()
    return b"event: thread.message.delta\n" + id_line + b"\n" + data + b"\n\n"


def _ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def _ws_event(seq: int) -> bytes:
    return _ws_frame(f'{{"seq":{seq},"event":"thread.message.delta","data":{{}}}}'.encode())


def script(transport: str, data_mode: bool, faulty: bool) -> tuple[bytes, list[bytes], int, int]:
    """The head (with a first body piece that holds no seq), the body's writes, and the
    lost and duplicated counts each subscriber must report."""
    if transport == "ws":
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        head += b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n" + _ws_frame(b'{"hi":1}')
        ev = {s: _ws_event(s) for s in range(1, FINAL + 1)}
        # look-alikes that are no seq: a match would count 99 and lose 12..98
        ev[12] += _ws_frame(b'{"seq":99,"evenX":1}') + _ws_frame(b'{"seq":":","event"}')
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(b": hello\n\n")
        ev = {s: _sse_event(s, data_mode) for s in range(1, FINAL + 1)}
        if data_mode:
            ev[12] += b'data: {"seq":99}\n\n' + b'id: 98\ndata: x {"seq":98,\n\n'
        else:
            ev[12] = _sse_event(12, False, b"id: 12")  # no prefix
            # look-alikes: not an id line (\r before the newline), an empty prefix, mid-line
            ev[12] += b"id: 99\r\n\n" + b"id: -98\n\n" + b"data: id: 97\n\n"
    seqs = list(range(1, FINAL + 1))
    lost = dup = 0
    if faulty:
        seqs = [1, 2, 3, 4, 5, 6, 7, 8, 8, 10, 11, 12, 13, 14, 15]  # 8 twice, 9 never
        lost, dup = 1, 1
    if transport == "ws":
        body = b"".join(ev[s] for s in seqs)
    else:  # two whole events a chunk, as a server writes them
        body = b"".join(_chunk(b"".join(ev[s] for s in seqs[i : i + 2])) for i in range(0, 15, 2))
    # writes that split events mid-line and between their two newlines
    writes, i = [], 0
    for cut in (7, 50, 61, 140, 141, 300, 333):
        writes.append(body[i:cut])
        i = cut
    writes += [body[i + k : i + k + 97] for k in range(0, len(body) - i, 97)]
    return head, [w for w in writes if w], lost, dup


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b""
        while b"\r\n\r\n" not in req:
            got = sock.recv(4096)
            if not got:
                return
            req += got
        path = req.split(b" ", 2)[1].decode()
        if path == "/missing":
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        _, transport, seq_in, faults = path.split("/")
        head, writes, _, _ = script(transport, seq_in == "data", faults == "faulty")
        go = self.server.go
        sock.sendall(head)
        go.wait(10)
        for w in writes:
            sock.sendall(w)
            time.sleep(0.002)
        time.sleep(0.05)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    go = threading.Event()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _kinds() -> list[Any]:
    native = pytest.mark.skipif(compiler() is None, reason="no C compiler for the native client")
    return ["python", pytest.param("native", marks=native)]


@pytest.fixture(scope="module", params=_kinds())
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    import multiprocessing as mp

    if request.param == "native":
        c: Any = NativeProc(build(), None)
    else:
        c = Proc(mp.get_context("spawn"), client_main, None)
    yield request.param, c
    c.stop()


def _drive(c: Any, srv: _Server, path: str, transport: str, seq_in: str) -> dict[str, Any]:
    srv.go = threading.Event()
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    c.send("connect", url, transport, N, 10.0, seq_in)
    conn = c.recv(20)
    c.send("arm", 10)
    assert c.recv(10) == "armed"
    srv.go.set()
    c.send("wait", FINAL, 10.0)
    wait = c.recv(20)
    c.send("latency", wait["first_receipt"])  # one process: its first receipts are the merged
    lat = c.recv(20)
    c.send("close")
    assert c.recv(10) == "closed"
    return {"connect": conn, "wait": wait, "latency": lat}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("transport", "seq_in"), [("sse", "id"), ("sse", "data"), ("ws", "id")], ids=str
)
@pytest.mark.parametrize("faults", ["clean", "faulty"])
def test_client_counts_match_the_script(
    client: tuple[str, Any], server: _Server, transport: str, seq_in: str, faults: str
) -> None:
    kind, c = client
    got = _drive(c, server, f"/{transport}/{seq_in}/{faults}", transport, seq_in)
    _, _, lost, dup = script(transport, seq_in == "data", faults == "faulty")
    conn, wait, lat = got["connect"], got["wait"], got["latency"]
    assert (conn["ready"], conn["failures"], conn["failed"]) == (N, 0, []), kind
    assert conn["start_ns"] <= conn["end_ns"], kind
    assert (wait["lost"], wait["duplicates"]) == (N * lost, N * dup), kind
    assert (wait["complete"], wait["cut"]) == (N, 0), kind
    table = array("q")
    table.frombytes(wait["first_receipt"])
    assert len(table) == FINAL + 1 and table[0] == 0, kind
    seen = {s for s in range(1, FINAL + 1) if table[s]}
    if faults == "clean":
        assert seen == set(range(1, FINAL + 1)), kind
        assert wait["deliveries"] == N * FINAL, kind
    else:
        # a read holding both sides of the gap counts 9 as delivered (Subscriber.receive), and
        # how reads split the stream is the kernel's doing
        assert seen >= set(range(1, FINAL + 1)) - {9}, kind
        assert N * (FINAL - 1) <= wait["deliveries"] <= N * FINAL, kind
    assert sum(lat["hist"].values()) == wait["deliveries"], kind
    assert all(b >= 0 for b in lat["hist"]) and lat["max_ns"] >= 0, kind
    assert wait["last_ns"] > 0 and wait["stall_ns"] >= 0, kind


@pytest.mark.timeout(30)
def test_client_reports_a_refused_head(client: tuple[str, Any], server: _Server) -> None:
    kind, c = client
    got = _drive(c, server, "/missing", "sse", "id")
    conn, wait = got["connect"], got["wait"]
    assert (conn["ready"], conn["failures"]) == (0, N), kind
    assert conn["failed"] == ["HTTP/1.1 404 Not Found"] * N, kind
    assert (wait["deliveries"], wait["complete"], wait["lost"], wait["cut"]) == (0, 0, 0, 0), kind


@pytest.mark.timeout(30)
def test_a_client_given_no_subscriber_is_ready_at_once(client: tuple[str, Any]) -> None:
    # With N = 1 one of the two client processes holds no subscriber: the Python one waited
    # for a readiness nothing would signal, the whole connect timeout (120 s in the benchmark).
    kind, c = client
    started = time.monotonic()
    c.send("connect", "http://127.0.0.1:9/sse", "sse", 0, 10.0, "id")
    conn = c.recv(20)
    assert (conn["ready"], conn["failures"]) == (0, 0), kind
    assert time.monotonic() - started < 5, kind
