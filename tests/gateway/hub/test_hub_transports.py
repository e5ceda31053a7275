"""SSE and WebSocket subscribers over real sockets on 127.0.0.1, served by the hub's handlers."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys

import aiohttp
import pytest
from aiohttp import web
from hub_helpers import (
    Hub,
    StartHub,
    dechunk,
    epoch_of,
    ev,
    numbered,
    open_sse,
    raw_request,
    seq_of,
)

from gateway.hub import SHUTDOWN_RETRY_MS, HubEvent, TransportSink
from gateway.hub.memory import MemorySubscription
from gateway.hub.sinks import HOLD_ABOVE
from gateway.hub.transports import WS_FRAME_BURST
from parsers.sse import SSEDecoder

RUN = "run:r1"
THREAD = "thread:t1"


async def ws_messages(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    out = []
    async with asyncio.timeout(5):
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT
            out.append(json.loads(msg.data))
    return out


@pytest.mark.asyncio
async def test_many_subscribers_receive_identical_bytes(hub: Hub) -> None:
    await hub.publish(RUN, ev(1, "thread.run.created"))
    sse = [await open_sse(hub, hub.url(RUN, since=0)) for _ in range(4)]
    wss = [await hub.session.ws_connect(hub.url(RUN, since=0)) for _ in range(3)]
    raw_ws: list[list[bytes]] = [[] for _ in wss]
    await hub.wait_subscribers(RUN, 7)
    for i in range(2, 40):
        await hub.publish(RUN, ev(i, "thread.message.delta"))
        if i % 7 == 0:
            await hub.broker.publish([RUN], [ev(100 + i), ev(200 + i)])
    await hub.publish(RUN, HubEvent("done", b"[DONE]"))
    await hub.broker.close_channel(RUN)

    streams = [await s.read_to_end() for s in sse]
    bodies = {bytes(s.raw) for s in sse}
    assert len(bodies) == 1
    expected = list(range(1, hub.broker.channel_statistics(RUN).last_seq + 1))
    for events in streams:
        assert numbered(events) == expected
        assert events[-1].event == "done" and events[-1].data == "[DONE]"
    for ws, raw in zip(wss, raw_ws, strict=True):
        async with asyncio.timeout(5):
            async for msg in ws:
                raw.append(msg.data.encode())
        assert ws.close_code == 1000
    assert len({tuple(r) for r in raw_ws}) == 1
    decoded = [json.loads(m) for m in raw_ws[0]]
    assert [m["seq"] for m in decoded] == expected
    assert [m["event"] for m in decoded] == [e.event for e in streams[0]]
    assert [json.dumps(m["data"]) if m["event"] != "done" else m["data"] for m in decoded] == [
        json.dumps(json.loads(e.data)) if e.event != "done" else e.data for e in streams[0]
    ]
    # The WS payload carries the SSE data bytes themselves.
    for m, e in zip(raw_ws[0][:-1], streams[0][:-1], strict=True):
        assert m.endswith(b',"data":' + e.data_bytes + b"}")


@pytest.mark.asyncio
async def test_ended_sse_response_is_a_complete_chunked_body_and_keep_alive_works(
    hub: Hub,
) -> None:
    await hub.publish(RUN, ev(1), HubEvent("done", b"[DONE]"))
    await hub.broker.close_channel(RUN)
    epoch = epoch_of(hub.broker, RUN)
    request = (
        f"GET /streams/{RUN}?since=0 HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /streams/{RUN}?since={epoch}-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await raw_request(hub.port, request)
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    for response, ids in ((first, [f"{epoch}-1", f"{epoch}-2"]), (second, [f"{epoch}-2"])):
        head, body = response.split(b"\r\n\r\n", 1)
        assert b"Transfer-Encoding: chunked" in head
        payload, terminated = dechunk(body)
        assert terminated
        assert [e.id for e in SSEDecoder().feed(payload)] == ids


@pytest.mark.asyncio
async def test_http10_sse_is_unchunked_and_ends_with_the_connection(hub: Hub) -> None:
    await hub.publish(RUN, ev(1))
    reader, writer = await raw_request(
        hub.port, f"GET /sse/{RUN}?since=0 HTTP/1.0\r\n\r\n".encode()
    )
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head
        await hub.publish(RUN, ev(2))
        await hub.broker.close_channel(RUN)
        body = await reader.read()
    writer.close()
    assert [seq_of(e.id) for e in SSEDecoder().feed(body)] == [1, 2]


@pytest.mark.asyncio
async def test_resume_while_publishing_has_no_gap_and_no_duplicate(hub: Hub) -> None:
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            await hub.publish(RUN, ev(i))
            await asyncio.sleep(0)

    await hub.publish(RUN, ev(0))
    task = asyncio.create_task(publisher())
    try:
        first = await open_sse(hub, hub.url(RUN, since=0))
        await first.read_until(lambda evs: len(evs) >= 30)
        first.response.close()  # a forced disconnect mid-stream
        last_id = first.events[-1].id
        last = seq_of(last_id)
        second = await open_sse(hub, hub.url(RUN, since=0), **{"Last-Event-ID": last_id})
        await second.read_until(lambda evs: len(evs) >= 30)
        second.response.close()
        ws = await hub.session.ws_connect(hub.url(RUN, since=last_id))
        async with asyncio.timeout(5):
            ws_seqs = [json.loads((await ws.receive()).data)["seq"] for _ in range(30)]
        await ws.close()
    finally:
        stop.set()
        await task
    assert numbered(first.events) == list(range(1, last + 1))
    got = numbered(second.events)
    assert got == list(range(last + 1, last + 1 + len(got)))
    assert ws_seqs == list(range(last + 1, last + 31))


@pytest.mark.asyncio
async def test_evicted_position_gets_notice_and_snapshot_over_sse(start_hub: StartHub) -> None:
    hub = await start_hub(max_history_events=3)
    await hub.publish(RUN, *(ev(i, f"e{i}") for i in range(1, 7)))
    epoch = epoch_of(hub.broker, RUN)
    stream = await open_sse(hub, hub.url(RUN), **{"Last-Event-ID": f"{epoch}-1"})
    await stream.read_until(lambda evs: len(evs) >= 2)
    await hub.publish(RUN, ev(7, "e7"))
    await stream.read_until(lambda evs: len(evs) >= 3)
    lost, snap, live = stream.events
    assert lost.event == "runcast.history_lost"
    assert json.loads(lost.data) == {
        "since": f"{epoch}-1",
        "epoch": epoch,
        "first_seq": 4,
        "last_seq": 6,
    }
    assert snap.event == "runcast.snapshot" and snap.id == f"{epoch}-6"
    assert json.loads(snap.data) == {
        "epoch": epoch,
        "seq": 6,
        "snapshot": {"count": 6, "names": [f"e{i}" for i in range(1, 7)]},
    }
    assert (live.id, live.event) == (f"{epoch}-7", "e7")
    stream.response.close()


@pytest.mark.asyncio
async def test_snapshot_first_subscription_over_websocket(hub: Hub) -> None:
    await hub.publish(RUN, ev(1, "a"), ev(2, "b"))
    ws = await hub.session.ws_connect(hub.url(RUN, snapshot=1))
    await hub.wait_subscribers(RUN, 1)
    await hub.publish(RUN, ev(3, "c"))
    await hub.broker.close_channel(RUN)
    snap, live = await ws_messages(ws)
    epoch = epoch_of(hub.broker, RUN)
    assert snap == {
        "epoch": epoch,
        "seq": 2,
        "event": "runcast.snapshot",
        "data": {"epoch": epoch, "seq": 2, "snapshot": {"count": 2, "names": ["a", "b"]}},
    }
    assert live == {"epoch": epoch, "seq": 3, "event": "c", "data": {"i": 3}}
    assert ws.close_code == 1000


@pytest.mark.asyncio
async def test_slow_subscriber_is_cut_off_while_a_fast_one_gets_everything(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(
        subscriber_buffer_bytes=64 * 1024, close_timeout=5.0, max_history_bytes=32 << 20
    )
    await hub.publish(THREAD, ev(0))
    reader, writer = await raw_request(
        hub.port, f"GET /sse/{THREAD}?since=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), rcvbuf=4096
    )
    await reader.readuntil(b"\r\n\r\n")  # then stop reading
    fast = await open_sse(hub, hub.url(THREAD, since=0))
    await hub.wait_subscribers(THREAD, 2)
    big = b'"%s"' % (b"y" * 32 * 1024)
    n = 400
    for i in range(n):
        await hub.publish(THREAD, HubEvent("big", big))
        # The fast subscriber keeps up; the raw one never reads.
        await fast.read_until(lambda evs, i=i: len(evs) == i + 2)
    assert numbered(fast.events) == list(range(1, n + 2))
    stats = hub.broker.channel_statistics(THREAD)
    assert (stats.lagged, stats.subscribers) == (1, 1)

    async with asyncio.timeout(10):
        body = await reader.read()
    writer.close()
    payload, terminated = dechunk(body)
    assert terminated
    events = SSEDecoder().feed(payload)
    *delivered, lagged = events
    assert lagged.event == "runcast.lagged"
    last = seq_of(delivered[-1].id)
    notice = json.loads(lagged.data)
    assert (notice["epoch"], notice["seq"]) == (epoch_of(hub.broker, THREAD), last)
    assert notice["error"]["message"].endswith(f"since={delivered[-1].id}")
    assert [seq_of(e.id) for e in delivered] == list(range(1, last + 1))
    assert last < n

    resumed = await open_sse(hub, hub.url(THREAD, since=delivered[-1].id))
    await resumed.read_until(lambda evs: len(evs) == n + 1 - last)
    assert numbered(resumed.events) == list(range(last + 1, n + 2))
    resumed.response.close()
    fast.response.close()


@pytest.mark.asyncio
async def test_slow_websocket_subscriber_gets_lagged_and_close_1013(start_hub: StartHub) -> None:
    hub = await start_hub(subscriber_buffer_bytes=64 * 1024, close_timeout=5.0)
    request = (
        f"GET /ws/{THREAD}?create=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    reader, writer = await raw_request(hub.port, request, rcvbuf=4096)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    await hub.wait_subscribers(THREAD, 1)
    big = b'"%s"' % (b"z" * 32 * 1024)
    for _ in range(400):
        await hub.publish(THREAD, HubEvent("big", big))
        await asyncio.sleep(0)
    assert hub.broker.channel_statistics(THREAD).lagged == 1
    messages = []
    async with asyncio.timeout(10):
        while True:
            b0, b1 = await reader.readexactly(2)
            size = b1 & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(size)
            if b0 & 0x0F == 0x8:
                close_code = int.from_bytes(payload[:2], "big")
                break
            messages.append(json.loads(payload))
    writer.close()
    assert close_code == 1013
    *delivered, lagged = messages
    assert lagged["event"] == "runcast.lagged"
    assert lagged["data"]["seq"] == delivered[-1]["seq"]
    assert lagged["data"]["epoch"] == delivered[-1]["epoch"] == epoch_of(hub.broker, THREAD)
    assert [m["seq"] for m in delivered] == list(range(1, len(delivered) + 1))


@pytest.mark.asyncio
async def test_limits_are_answered_before_the_stream_starts(start_hub: StartHub) -> None:
    hub = await start_hub(max_subscribers_per_channel=1)
    await hub.publish(RUN, ev(1))
    first = await open_sse(hub, hub.url(RUN))
    async with hub.session.get(hub.url(RUN)) as response:
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "too_many_subscribers"
    for url in (hub.url(RUN), hub.url(RUN, path="ws")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await hub.session.ws_connect(url)
        assert info.value.status == 429
    async with hub.session.get(hub.url(RUN, path="ws")) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_websocket"
    async with hub.session.get(hub.url("run:missing")) as response:
        assert response.status == 404
    async with hub.session.get(hub.url(RUN), headers={"Last-Event-ID": "x1"}) as response:
        assert response.status == 400
    first.response.close()


@pytest.mark.asyncio
async def test_heartbeats_over_sse_and_websocket(start_hub: StartHub) -> None:
    hub = await start_hub(heartbeat_interval=0.05)
    sse = await open_sse(hub, hub.url(THREAD, create=1))
    ws = await hub.session.ws_connect(hub.url(THREAD, create=1), autoping=False)
    async with asyncio.timeout(5):
        while b": ping\n\n" not in sse.raw:
            sse.raw += await sse.response.content.readany()
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.PING
    await ws.pong()
    assert sse.decoder.feed(bytes(sse.raw)) == []  # comments are not events
    await ws.close()
    sse.response.close()


@pytest.mark.asyncio
async def test_a_websocket_peer_that_stops_answering_pings_is_cut_off(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(heartbeat_interval=0.05)
    url = hub.url(THREAD, create=1)
    silent = await hub.session.ws_connect(url, autoping=False)
    alive = await hub.session.ws_connect(url)  # aiohttp's client answers pings as it reads
    reading = asyncio.create_task(alive.receive())
    pinging = await hub.session.ws_connect(url, autoping=False)
    await hub.wait_subscribers(THREAD, 3)
    pings = 0

    async def answer_some_then_go_quiet() -> None:
        nonlocal pings
        while True:  # the peer's own frames: answered, so the hub's ping must be answered too
            msg = await pinging.receive()
            if msg.type is not aiohttp.WSMsgType.PING:
                return
            pings += 1
            await pinging.ping(b"are you there")
            assert (await pinging.receive()).type is aiohttp.WSMsgType.PONG
            if pings == 5:
                return  # no more answers from here on

    await asyncio.wait_for(answer_some_then_go_quiet(), 5)
    async with asyncio.timeout(5):
        while silent.exception() is None and not silent.closed:
            msg = await silent.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    await hub.wait_subscribers(THREAD, 1)  # both quiet peers are gone, the live one stays
    await asyncio.sleep(0.3)  # many more heartbeats
    stats = hub.broker.channel_statistics(THREAD)
    assert stats is not None and stats.subscribers == 1 and stats.disconnected == 2
    await hub.publish(THREAD, ev(1))
    msg = await asyncio.wait_for(reading, 5)
    assert msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["seq"] == 1
    for ws in (silent, alive, pinging):
        await ws.close()


@pytest.mark.asyncio
async def test_a_websocket_peer_flooding_frames_is_closed_and_a_chatty_one_is_not(
    hub: Hub,
) -> None:
    url = hub.url(THREAD, create=1)
    flooding = await hub.session.ws_connect(url, autoping=False)
    chatty = await hub.session.ws_connect(url)
    await hub.wait_subscribers(THREAD, 2)
    for _ in range(WS_FRAME_BURST):  # as many as a peer may send at once: allowed
        await chatty.send_str("hello")
    for _ in range(WS_FRAME_BURST * 10):
        if flooding.closed:
            break
        await flooding.pong(b"x" * 100)
        await asyncio.sleep(0)
    async with asyncio.timeout(5):
        msg = await flooding.receive()
        while msg.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            msg = await flooding.receive()
    assert flooding.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    await hub.wait_subscribers(THREAD, 1)
    reading = asyncio.create_task(chatty.receive())
    await hub.publish(THREAD, ev(1))
    msg = await asyncio.wait_for(reading, 5)
    assert msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["seq"] == 1
    await chatty.close()


@pytest.mark.asyncio
async def test_dead_connections_are_removed_by_the_sweep(hub: Hub) -> None:
    sse = await open_sse(hub, hub.url(THREAD, create=1))
    ws = await hub.session.ws_connect(hub.url(THREAD, create=1))
    reader, writer = await raw_request(
        hub.port, f"GET /sse/{THREAD}?create=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    await hub.wait_subscribers(THREAD, 3)
    sse.response.close()
    writer.transport.abort()
    await ws.close()
    await hub.wait_subscribers(THREAD, 0)
    assert hub.broker.statistics().subscribers == 0


@pytest.mark.asyncio
async def test_dead_connections_are_removed_when_publishing(start_hub: StartHub) -> None:
    hub = await start_hub(sweep_interval=3600.0)
    sse = await open_sse(hub, hub.url(THREAD, create=1))
    await hub.wait_subscribers(THREAD, 1)
    sse.response.close()

    async def publish_until_gone() -> None:
        while hub.broker.channel_statistics(THREAD).subscribers:
            await hub.publish(THREAD, ev(1))
            await asyncio.sleep(0.01)

    await asyncio.wait_for(publish_until_gone(), 5)
    assert hub.broker.channel_statistics(THREAD).disconnected == 1


@pytest.mark.asyncio
async def test_broker_shutdown_ends_streams(hub: Hub) -> None:
    sse = await open_sse(hub, hub.url(THREAD, create=1))
    ws = await hub.session.ws_connect(hub.url(THREAD, create=1))
    await hub.wait_subscribers(THREAD, 2)
    await hub.publish(THREAD, ev(1))
    await hub.broker.aclose()
    events = await sse.read_to_end()
    assert numbered(events) == [1]
    # The last word says why, and when to reconnect: EventSource takes `retry:` as its delay.
    assert events[-1].event == "runcast.shutdown"
    assert events[-1].retry == SHUTDOWN_RETRY_MS
    epoch = events[0].id.rpartition("-")[0]
    assert json.loads(events[-1].data) == {
        "epoch": epoch,
        "seq": 1,
        "retry_ms": SHUTDOWN_RETRY_MS,
    }
    assert await ws_messages(ws) == [
        {"epoch": epoch, "seq": 1, "event": "tick", "data": {"i": 1}},
        {
            "epoch": None,
            "seq": None,
            "event": "runcast.shutdown",
            "data": {"epoch": epoch, "seq": 1, "retry_ms": SHUTDOWN_RETRY_MS},
        },
    ]
    assert ws.close_code == 1012  # service restart: reconnect later


@pytest.mark.asyncio
async def test_a_live_only_subscriber_is_positioned_where_it_joined(hub: Hub) -> None:
    # Joined without a position after 3 events: its notices name seq 3, where it stands, not 0
    # (resuming from 0 would replay history from before it subscribed).
    await hub.publish(THREAD, ev(1), ev(2), ev(3))
    sse = await open_sse(hub, hub.url(THREAD))
    ws = await hub.session.ws_connect(hub.url(THREAD))
    await hub.wait_subscribers(THREAD, 2)
    epoch = epoch_of(hub.broker, THREAD)
    await hub.broker.aclose()
    [notice] = await sse.read_to_end()
    expected = {"epoch": epoch, "seq": 3, "retry_ms": SHUTDOWN_RETRY_MS}
    assert (notice.event, json.loads(notice.data)) == ("runcast.shutdown", expected)
    [message] = await ws_messages(ws)
    assert (message["event"], message["data"]) == ("runcast.shutdown", expected)


@pytest.mark.asyncio
async def test_thread_channel_carries_runs_and_outlives_them(hub: Hub) -> None:
    stream = await open_sse(hub, hub.url(THREAD, create=1))
    await hub.wait_subscribers(THREAD, 1)
    for run in ("run:a", "run:b"):
        await hub.broker.publish([run, THREAD], [ev(1, "thread.run.created")])
        await hub.broker.publish([run, THREAD], [HubEvent("done", b"[DONE]")])
        await hub.broker.close_channel(run)
    await stream.read_until(lambda evs: len(evs) == 4)
    epoch = epoch_of(hub.broker, THREAD)
    assert [(e.id, e.event) for e in stream.events] == [
        (f"{epoch}-1", "thread.run.created"),
        (f"{epoch}-2", "done"),
        (f"{epoch}-3", "thread.run.created"),
        (f"{epoch}-4", "done"),
    ]
    assert hub.broker.channel_statistics(THREAD).subscribers == 1
    stream.response.close()


def _alive(*kinds: type) -> dict[str, int]:
    gc.collect()
    counts = dict.fromkeys((k.__name__ for k in kinds), 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts and isinstance(obj, kinds):
            counts[name] += 1
    return counts


@pytest.mark.asyncio
async def test_subscribers_that_leave_leave_nothing_behind(hub: Hub) -> None:
    """Per-subscriber objects (sinks, subscriptions, aiohttp's requests and responses, the
    reader tasks of WebSockets) are all freed once the subscribers have gone, and the channel's
    table of subscribers shrinks back."""
    kinds = (TransportSink, MemorySubscription, web.Request, web.StreamResponse, asyncio.Task)
    await hub.publish(THREAD, ev(1))
    baseline = _alive(*kinds)
    sse = 40
    clients = [
        await raw_request(hub.port, f"GET /sse/{THREAD} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for _ in range(sse)
    ]
    wss = [await hub.session.ws_connect(hub.url(THREAD, path="ws")) for _ in range(10)]
    await hub.wait_subscribers(THREAD, sse + len(wss))
    for i in range(2, 6):
        await hub.publish(THREAD, ev(i))
    for reader, _ in clients:
        async with asyncio.timeout(5):
            await reader.readuntil(b'{"i":5}\n\n')
    connected = _alive(*kinds)
    assert connected["TransportSink"] == baseline["TransportSink"] + sse + len(wss)

    for _, writer in clients:
        writer.close()
    for ws in wss:
        await ws.close()
    await hub.wait_subscribers(THREAD, 0)
    await hub.wait_for(lambda: _alive(*kinds) == baseline)
    channel = hub.broker._channels[THREAD]
    assert all(sys.getsizeof(sinks) == sys.getsizeof({}) for sinks in channel._sinks.values())


class _CountedTransport:
    """A subscriber's real transport, its writes counted."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.inner = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.inner.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.asyncio
async def test_a_reader_well_behind_gets_events_held_and_written_together(
    start_hub: StartHub,
) -> None:
    # Every write queued in a transport costs the loop some 370 bytes of its own: 1 MiB of
    # small deltas queued one write each held 3.8 MiB per stalled subscriber. Past HOLD_ABOVE
    # waiting, events are held and go out in one write every HOLD_SECONDS; none is lost, the
    # order holds, and what was held goes out before the channel's end.
    hub = await start_hub(subscriber_buffer_bytes=1 << 20, close_timeout=5.0)
    await hub.publish(THREAD, ev(0))
    reader, writer = await raw_request(
        hub.port, f"GET /sse/{THREAD}?since=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), rcvbuf=4096
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.pause_reading()  # then stop reading, for now
    await hub.wait_subscribers(THREAD, 1)
    gc.collect()
    [sink] = [o for o in gc.get_objects() if isinstance(o, TransportSink)]
    assert sink.transport is not None
    sink.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    counted = _CountedTransport(sink.transport)
    sink._transport = counted  # type: ignore[assignment]
    delta = b'{"delta":{"content":[{"text":{"value":"%s"}}]}}' % (b"t" * 180)
    n = 3000
    for i in range(n):
        await hub.publish(THREAD, HubEvent("thread.message.delta", delta))
        if i % 10 == 0:
            await asyncio.sleep(0.001)  # a paced stream: events in many loop turns
    # Past the first HOLD_ABOVE bytes, writes come once per HOLD_SECONDS, not once per event.
    assert counted.writes < HOLD_ABOVE // len(delta) + 200, counted.writes
    assert hub.broker.channel_statistics(THREAD).lagged == 0
    await hub.broker.close_channel(THREAD)
    writer.transport.resume_reading()
    async with asyncio.timeout(10):
        body = await reader.readuntil(b"\r\n0\r\n\r\n")  # the end of the chunked body
    writer.close()
    payload, terminated = dechunk(body)
    assert terminated
    events = SSEDecoder().feed(payload)
    assert [seq_of(e.id) for e in events] == list(range(1, n + 2))
    assert {e.data for e in events[1:]} == {delta.decode()}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "answer"),
    [
        # RFC 6455 section 7.4: 1004-1006 and 1015 are reserved, never sent in a close frame;
        # 1016-2999 are for the protocol's own extensions; past 4999 no code is defined.
        *((code, 1002) for code in (1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)),
        *((code, 1000) for code in (1000, 1001, 1011, 3000, 4999)),
    ],
)
async def test_a_close_frame_is_answered_1000_or_1002_for_a_code_no_peer_may_send(
    hub: Hub, code: int, answer: int
) -> None:
    ws = await hub.session.ws_connect(hub.url(THREAD, create=1), autoclose=False)
    await hub.wait_subscribers(THREAD, 1)
    async with asyncio.timeout(5):
        await ws.close(code=code)
    assert ws.close_code == answer
    await hub.wait_subscribers(THREAD, 0)


_WS_UPGRADE = (
    "GET /ws/{channel}?create=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def client_frame(opcode: int, payload: bytes = b"", *, masked: bool = True) -> bytes:
    """A whole client frame (RFC 6455 section 5.2); a 16-bit length from 126 bytes on."""
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    length = bytes([mask_bit | n]) if n < 126 else bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    if not masked:
        return bytes([0x80 | opcode]) + length + payload
    key = b"\x01\x02\x03\x04"
    return (
        bytes([0x80 | opcode]) + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


async def server_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """The server's frames (opcode, payload) up to its close frame or the end of the stream."""
    frames: list[tuple[int, bytes]] = []
    async with asyncio.timeout(5):
        while head := await reader.read(2):
            if len(head) == 1:
                head += await reader.readexactly(1)
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            frames.append((head[0] & 0x0F, await reader.readexactly(n)))
            if frames[-1][0] == 0x8:
                break
    return frames


UNMASKED_TEXT = client_frame(0x1, b"hello", masked=False)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("with_upgrade", "writes", "pongs"),
    [
        (b"", [UNMASKED_TEXT], 0),
        (b"", [client_frame(0xA, b"pong", masked=False)], 0),
        # Frames before it are read as usual (the ping answered), their lengths followed.
        (b"", [client_frame(0x1, b"x" * 300) + client_frame(0x9, b"p") + UNMASKED_TEXT], 1),
        (b"", [UNMASKED_TEXT[:1], UNMASKED_TEXT[1:]], 0),
        (UNMASKED_TEXT, [], 0),
    ],
    ids=["text", "control", "after-masked-frames", "header-split", "with-the-upgrade"],
)
async def test_an_unmasked_client_frame_closes_the_websocket_with_1002(
    hub: Hub, with_upgrade: bytes, writes: list[bytes], pongs: int
) -> None:
    # RFC 6455 section 5.1: "The server MUST close the connection upon receiving a frame that
    # is not masked." aiohttp's reader took it, and the connection went on.
    request = _WS_UPGRADE.format(channel=THREAD).encode() + with_upgrade
    reader, writer = await raw_request(hub.port, request)
    try:
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        if writes:  # (a frame that came with the upgrade may end the subscription at once)
            await hub.wait_subscribers(THREAD, 1)
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)  # each write a read of its own
        frames = await server_frames(reader)
        assert frames[:pongs] == [(0xA, b"p")] * pongs
        assert frames[pongs:] == [(0x8, (1002).to_bytes(2, "big"))]
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # then the connection ends
        await hub.wait_subscribers(THREAD, 0)
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_masked_client_frames_of_every_length_keep_the_websocket_open(hub: Hub) -> None:
    reader, writer = await raw_request(hub.port, _WS_UPGRADE.format(channel=THREAD).encode())
    try:
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        await hub.wait_subscribers(THREAD, 1)
        sent = b"".join(client_frame(0x1, b"y" * n) for n in (0, 1, 125, 126, 4000))
        for i in range(0, len(sent), 7):  # the frame headers split every which way
            writer.write(sent[i : i + 7])
        writer.write(client_frame(0x9, b"still here"))
        async with asyncio.timeout(5):
            assert await reader.readexactly(12) == b"\x8a\x0astill here"
        await hub.publish(THREAD, ev(1))
        [(opcode, payload)] = await asyncio.wait_for(_one_frame(reader), 5)
        assert opcode == 0x1 and json.loads(payload)["event"] == "tick"
    finally:
        writer.close()


async def _one_frame(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    return [(head[0] & 0x0F, await reader.readexactly(n))]
