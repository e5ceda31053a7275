"""A channel's write coalescing over real sockets: same bytes, fewer writes, nothing held late."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from hub_helpers import Hub, StartHub, dechunk, epoch_of, ev, raw_request, seq_of

from gateway.hub import HubEvent
from parsers.sse import SSEDecoder

THREAD = "thread:t1"
HELD = 10_000.0
"""A window no test waits for: what arrives, arrived because something flushed it."""


def _chunks(body: bytes) -> int:
    """Chunks before the terminating one: one per write the hub made to this subscriber."""
    count, pos = 0, 0
    while (size := int(body[pos : body.index(b"\r\n", pos)], 16)) != 0:
        count += 1
        pos = body.index(b"\r\n", pos) + 2 + size + 2
    return count


async def _sse(
    hub: Hub, since: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    query = "" if since is None else f"&since={since}"
    request = f"GET /sse/{THREAD}?create=1{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reader, writer = await raw_request(hub.port, request.encode())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def _rest(client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bytes:
    """The rest of a chunked body, up to the end of the connection."""
    reader, writer = client
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def _run(hub: Hub) -> tuple[list[bytes], list[list[str]]]:
    """Three SSE and one WebSocket subscriber; 30 publishes of one event each back to back, then a
    run's last two events; every subscriber's raw body and the WebSocket's messages."""
    sse = [await _sse(hub) for _ in range(3)]
    ws = await hub.session.ws_connect(hub.url(THREAD, path="ws", create=1))
    await hub.wait_subscribers(THREAD, 4)
    for i in range(30):
        await hub.publish(THREAD, ev(i, "thread.message.delta"))
        await asyncio.sleep(0)
    await hub.publish(THREAD, ev(30, "thread.run.completed"))
    await hub.publish(THREAD, HubEvent("done", b"[DONE]"))
    await hub.broker.close_channel(THREAD)
    bodies = [await _rest(client) for client in sse]
    messages = []
    async with asyncio.timeout(5):
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT
            messages.append(msg.data)
    return bodies, [messages]


@pytest.mark.asyncio
async def test_coalescing_keeps_the_bytes_and_cuts_the_writes(start_hub: StartHub) -> None:
    plain_bodies, plain_ws = await _run(await start_hub())
    coalesced_bodies, coalesced_ws = await _run(await start_hub(coalesce_ms=200))

    # The two hubs' channels have their own epochs: compare what follows them.
    payloads = {
        (re.sub(rb"id: \w+-", b"id: ", body), complete)
        for body, complete in (dechunk(b) for b in plain_bodies + coalesced_bodies)
    }
    assert len(payloads) == 1
    payload, complete = payloads.pop()
    assert complete
    events = SSEDecoder().feed(payload)
    assert [e.id for e in events] == [str(i) for i in range(1, 33)]
    assert events[-1].event == "done"
    assert [[re.sub(r'"epoch":"\w+"', "", m) for m in ms] for ms in plain_ws] == [
        [re.sub(r'"epoch":"\w+"', "", m) for m in ms] for ms in coalesced_ws
    ]
    assert [json.loads(m)["seq"] for m in coalesced_ws[0]] == list(range(1, 33))

    assert {_chunks(body) for body in plain_bodies} == {32}
    # The 31 first events within one window, then `done` on its own (the run's end flushed).
    assert {_chunks(body) for body in coalesced_bodies} == {2}


@pytest.mark.asyncio
async def test_held_events_wait_for_the_window_and_terminal_events_flush_at_once(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(coalesce_ms=300)
    client = await _sse(hub)
    reader = client[0]
    await hub.wait_subscribers(THREAD, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await hub.publish(THREAD, ev(1))
    await hub.publish(THREAD, ev(2))
    async with asyncio.timeout(5):
        first = await reader.readuntil(b'{"i":2}\n\n')
    assert re.search(rb"id: \w+-1\n", first)
    assert 0.25 <= loop.time() - started < 2.0

    hub2 = await start_hub(coalesce_ms=HELD)
    client2 = await _sse(hub2)
    reader2 = client2[0]
    await hub2.wait_subscribers(THREAD, 1)
    await hub2.publish(THREAD, ev(1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await reader2.readuntil(b'{"i":1}\n\n')
    await hub2.publish(THREAD, ev(2, "thread.run.requires_action"))
    async with asyncio.timeout(1):
        await reader2.readuntil(b'{"i":2}\n\n\r\n')

    await hub2.publish(THREAD, ev(3))
    await hub2.broker.close_channel(THREAD)  # what is held goes out before the end
    assert [seq_of(e.id) for e in SSEDecoder().feed(dechunk(await _rest(client2))[0])] == [3]
    await hub.broker.close_channel(THREAD)
    await _rest(client)


@pytest.mark.asyncio
async def test_a_subscriber_attaching_within_the_window_has_no_gap_and_no_duplicate(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(coalesce_ms=HELD)
    early = await _sse(hub)
    await hub.wait_subscribers(THREAD, 1)
    for i in range(1, 4):
        await hub.publish(THREAD, ev(i))
    late = await _sse(hub, since=f"{epoch_of(hub.broker, THREAD)}-1")
    async with asyncio.timeout(1):
        # Written to the early one when the late one came (the end of that chunk).
        await early[0].readuntil(b'{"i":3}\n\n\r\n')
    for i in range(4, 6):
        await hub.publish(THREAD, ev(i))
    await hub.broker.close_channel(THREAD)
    early_ids = [seq_of(e.id) for e in SSEDecoder().feed(dechunk(await _rest(early))[0])]
    late_ids = [seq_of(e.id) for e in SSEDecoder().feed(dechunk(await _rest(late))[0])]
    assert early_ids == [4, 5]  # 1-3 were read above
    assert late_ids == [2, 3, 4, 5]


@pytest.mark.asyncio
async def test_a_dropped_channel_cancels_its_window(start_hub: StartHub) -> None:
    hub = await start_hub(coalesce_ms=HELD)
    client = await _sse(hub)
    await hub.wait_subscribers(THREAD, 1)
    await hub.publish(THREAD, ev(1))
    channel = hub.broker._channels[THREAD]
    assert channel._timer is not None
    await hub.broker.aclose()
    assert channel._timer is None
    # The shutdown wrote what was held, then its notice.
    events = SSEDecoder().feed(dechunk(await _rest(client))[0])
    assert [e.event for e in events] == ["tick", "runcast.shutdown"]
