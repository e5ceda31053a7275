"""The gateway's lifecycle over real sockets: prompt shutdown mid-run, no leftover subscribers."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import aiohttp
import pytest
from http_helpers import (
    WAIT,
    StartGateway,
    Subscriber,
    canonical,
    new_thread,
    read_sse,
    sdk_client,
    sse_subscribe,
    ws_subscribe,
)

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}

SHUTDOWN_BOUND = 5.0
"""Well under the gateway's own ``shutdown_timeout`` in these tests (30 s): a stream that held
shutdown until aiohttp gave up on it would blow this bound."""


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def until_deltas(sub: Subscriber, n: int) -> None:
    await wait_until(lambda: sub.names.count("thread.message.delta") >= n)


@pytest.mark.asyncio
async def test_shutdown_mid_run_ends_every_stream_explicitly_and_promptly(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # 500 deltas 20 ms apart: the run would stream for 10 s.
    gateway = await start_gateway(sim={"deltas": 500, "delay_ms": 20}, shutdown_timeout=30.0)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    thread_response, thread_task = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    creator_response = await session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers=HEADERS,
    )
    assert creator_response.status == 200
    run_id = creator_response.headers["runcast-run-id"]
    creator = Subscriber()
    creator_task = asyncio.create_task(read_sse(creator_response, creator))
    ws, ws_task = await ws_subscribe(session, f"{gateway.url}/streams/runs/{run_id}?since=0")
    await until_deltas(creator, 3)
    assert gateway.relays.statistics().active == 1
    assert gateway.broker.statistics().subscribers == 2

    async with asyncio.timeout(SHUTDOWN_BOUND):
        await gateway.runner.cleanup()
        thread_sub = await thread_task
        ws_sub = await ws_task
        await creator_task

    # Every body ended in order (a cut chunked body would have raised in the client) ...
    assert thread_sub.ended and creator.ended and ws_sub.ended
    assert ws.close_code == aiohttp.WSCloseCode.SERVICE_RESTART
    # ... mid-run: events came, the run's end did not; the last word says so.
    for sub in (thread_sub, ws_sub, creator):
        assert "thread.message.delta" in sub.names
        assert "done" not in sub.names and "thread.run.completed" not in sub.names
        assert sub.names[-1] == "runcast.shutdown"
        assert sub.names.count("runcast.shutdown") == 1
    assert creator.events[-1].json()["error"]["code"] == "shutting_down"
    # The relay stopped before the hub: the creator and the run channel got the same events.
    run_events = creator.events[:-1]
    assert [e.seq for e in run_events] == list(range(1, len(run_events) + 1))
    assert [e.seq for e in ws_sub.events[:-1]] == [e.seq for e in run_events]
    assert canonical(ws_sub.upstream) == canonical(creator.upstream)
    assert gateway.relays.statistics().active == 0
    assert gateway.broker.statistics().subscribers == 0
    await ws.close()
    thread_response.close()
    creator_response.close()


@pytest.mark.asyncio
async def test_streams_asked_for_while_shutting_down_get_503(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """Between the shutdown signal and the last handler's end, a keep-alive connection may still
    bring a request: streams are refused with a retryable 503, other calls still pass."""
    gateway = await start_gateway()
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    await gateway.app.shutdown()  # what runner.cleanup() signals first; it signals again later
    async with session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers=HEADERS,
    ) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "shutting_down"
    async with session.get(f"{gateway.url}/streams/threads/{thread_id}") as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "shutting_down"
    async with session.get(f"{gateway.v1}/threads/{thread_id}", headers=HEADERS) as response:
        assert response.status == 200
    async with asyncio.timeout(SHUTDOWN_BOUND):
        await gateway.runner.cleanup()


CLEANUP_BOUND = 5.0
"""How long vanished subscribers may linger (a sweep is 0.05 s, a publish every 20 ms)."""

WS_UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def raw_subscriber(
    port: int, path: str, *, version: str = "1.1", ws: bool = False
) -> socket.socket:
    """A subscriber over a plain socket, returned once its response has started."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = f"GET {path} HTTP/{version}\r\nHost: localhost\r\n{WS_UPGRADE if ws else ''}\r\n"
    await loop.sock_sendall(sock, request.encode())
    head = b""
    async with asyncio.timeout(WAIT):
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            assert chunk, "the gateway closed the connection"
            head += chunk
    assert head.startswith(f"HTTP/{version} {101 if ws else 200} ".encode()), head
    return sock


def vanish(sock: socket.socket) -> None:
    """Leave as a crashed client does: a TCP reset, no goodbye."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "hub",
    [{"sweep_interval": 0.05}, {"sweep_interval": 3600.0, "heartbeat_interval": 0.0}],
    ids=["sweep", "no-housekeeping"],
)
async def test_vanished_subscribers_leave_nothing_behind(
    start_gateway: StartGateway, session: aiohttp.ClientSession, hub: dict[str, float]
) -> None:
    """SSE (HTTP/1.1 chunked and HTTP/1.0) and WebSocket subscribers of a live run channel, its
    thread channel and an idle thread channel all vanish mid-run; the hub and the connection
    registry are empty again within a bounded wait, with or without the housekeeping task (then
    the handler's cancellation or the next publish finds them)."""
    gateway = await start_gateway(sim={"deltas": 500, "delay_ms": 20}, hub=hub)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    creator_response = await session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers=HEADERS,
    )
    run_id = creator_response.headers["runcast-run-id"]
    creator = Subscriber()
    creator_task = asyncio.create_task(read_sse(creator_response, creator))
    paths = [f"/streams/runs/{run_id}", f"/streams/threads/{thread_id}", "/streams/threads/th_idle"]
    port = int(gateway.url.rsplit(":", 1)[1])
    per_kind = 3
    sockets = []
    for path in paths:
        for _ in range(per_kind):
            sockets.append(await raw_subscriber(port, path, version="1.1"))
            sockets.append(await raw_subscriber(port, path, version="1.0"))
            sockets.append(await raw_subscriber(port, path, ws=True))
    n = len(sockets)
    await wait_until(lambda: gateway.broker.statistics().subscribers == n)
    assert gateway.connections.count() == n

    for sock in sockets:
        vanish(sock)

    # Long before the run's end (10 s), which would end its channels' subscribers anyway.
    await wait_until(lambda: gateway.broker.statistics().subscribers == 0, timeout=CLEANUP_BOUND)
    await wait_until(lambda: gateway.connections.count() == 0, timeout=CLEANUP_BOUND)
    stats = gateway.broker.statistics()
    assert (stats.disconnected, stats.lagged) == (n, 0)
    assert gateway.relays.statistics().active == 1  # the run itself goes on
    assert "done" not in creator.names
    creator_response.close()
    await asyncio.wait([creator_task])
