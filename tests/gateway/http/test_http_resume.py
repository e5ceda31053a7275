"""Resume after a dropped connection, expired positions, snapshots, and slow consumers."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import msgspec
import orjson
import pytest
from http_helpers import (
    WAIT,
    Gateway,
    StartGateway,
    Subscriber,
    new_thread,
    read_sse,
    sdk_client,
    sse_subscribe,
    stream_run,
)

from parsers.accumulate import RunAccumulator, RunSnapshot
from parsers.assistants import decode_event
from parsers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}


async def start_run(
    session: aiohttp.ClientSession, gateway: Gateway, **body: object
) -> tuple[str, str, asyncio.Task[Subscriber]]:
    """Start a streamed run as a raw creator; returns (run id, thread id, creator task)."""
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    response = await session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True, **body},
        headers=HEADERS,
    )
    assert response.status == 200, await response.text()
    run_id = response.headers["runcast-run-id"]
    return run_id, thread_id, asyncio.create_task(read_sse(response, Subscriber()))


def accumulate(events: list[tuple[str, bytes]]) -> RunSnapshot:
    acc = RunAccumulator()
    for name, data in events:
        acc.apply(decode_event(ServerSentEvent(event=name, data_bytes=data)))
    return acc.snapshot()


@pytest.mark.asyncio
async def test_resume_after_forced_disconnect_has_no_gap_and_no_duplicate(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 150, "delay_ms": 5})
    run_id, _, creator = await start_run(session, gateway)
    channel = f"run:{run_id}"
    url = f"{gateway.url}/streams/runs/{run_id}?since=0"

    first = await session.get(url)
    decoder = SSEDecoder()
    got: list[ServerSentEvent] = []
    while len(got) < 10:
        got.extend(decoder.feed(await first.content.readany()))
    assert gateway.connections.drop(channel) == 1
    with pytest.raises(aiohttp.ClientPayloadError):  # the chunked body breaks off
        async with asyncio.timeout(WAIT):
            async for chunk in first.content.iter_any():  # whatever arrived before the cut
                got.extend(decoder.feed(chunk))
    first.close()
    last = got[-1].id
    resumed = await session.get(
        f"{gateway.url}/streams/runs/{run_id}", headers={"Last-Event-ID": last}
    )
    async with asyncio.timeout(WAIT):
        rest = await read_sse(resumed, Subscriber())
        whole = await creator
    seqs = [int(e.id.rpartition("-")[2]) for e in got] + rest.seqs
    assert seqs == list(range(1, len(whole.events) + 1))
    assert [(e.event, e.data_bytes) for e in got] + [(e.event, e.data) for e in rest.events] == [
        (e.event, e.data) for e in whole.events
    ]


@pytest.mark.asyncio
async def test_expired_position_gets_notice_then_snapshot(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 30}, hub={"max_history_events": 5})
    run_id, _, creator = await start_run(session, gateway)
    async with asyncio.timeout(WAIT):
        whole = await creator
    epoch = gateway.broker.channel_statistics(f"run:{run_id}").epoch
    since = f"{epoch}-2"
    async with session.get(f"{gateway.url}/streams/runs/{run_id}?since={since}") as response:
        sub = await read_sse(response, Subscriber())
    lost, snapshot = sub.events[0], sub.events[1]
    assert lost.event == "runcast.history_lost"
    total = len(whole.events)
    assert lost.json() == {
        "since": since,
        "epoch": epoch,
        "first_seq": total - 4,
        "last_seq": total,
    }
    # A bare number (an id from before epochs) never matches: the same notice, the same snapshot.
    async with session.get(f"{gateway.url}/streams/runs/{run_id}?since=2") as response:
        bare = await read_sse(response, Subscriber())
    assert bare.events[0].json()["since"] == "2"
    assert bare.events[1].json() == snapshot.json()
    assert snapshot.event == "runcast.snapshot"
    assert snapshot.json()["seq"] == total
    expected = accumulate([(e.event, e.data) for e in whole.events])
    assert snapshot.json()["snapshot"] == orjson.loads(msgspec.json.encode(expected))


@pytest.mark.asyncio
async def test_snapshot_equals_accumulated_events_up_to_its_seq(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 150, "delay_ms": 5})
    run_id, _, creator = await start_run(session, gateway)
    seen = 0
    async with asyncio.timeout(WAIT):
        while seen < 12:  # mid-run
            await asyncio.sleep(0.01)
            stats = gateway.broker.channel_statistics(f"run:{run_id}")
            seen = stats.last_seq if stats else 0
    async with session.get(f"{gateway.url}/streams/runs/{run_id}/snapshot") as response:
        assert response.status == 200
        body = await response.json()
    async with asyncio.timeout(WAIT):
        whole = await creator
    seq = body["seq"]
    assert 12 <= seq < len(whole.events)
    expected = accumulate([(e.event, e.data) for e in whole.events[:seq]])
    assert body["snapshot"] == orjson.loads(msgspec.json.encode(expected))
    assert body["snapshot"]["status"] == "in_progress"

    # ?snapshot=1 sends the snapshot first, then live events from seq + 1.
    async with session.get(f"{gateway.url}/streams/runs/{run_id}?snapshot=1") as response:
        sub = await read_sse(response, Subscriber())
    assert sub.events[0].event == "runcast.snapshot"
    assert sub.events[0].seq == len(whole.events)
    assert sub.events[0].json()["snapshot"]["status"] == "completed"


@pytest.mark.asyncio
async def test_reconnect_to_a_finished_run_gets_204_or_only_what_it_missed(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    """204 tells an EventSource to stop: a reconnect at the end of an ended channel gets it; an
    earlier position gets the events it missed and the end; WebSocket closes 1000 at once."""
    run_id, _, creator = await start_run(session, gateway)
    async with asyncio.timeout(WAIT):
        whole = await creator
    last = whole.seqs[-1]
    epoch = whole.events[-1].id.rpartition("-")[0]
    url = f"{gateway.url}/streams/runs/{run_id}"
    await wait_closed(gateway, run_id)

    for headers in ({"Last-Event-ID": f"{epoch}-{last}"}, {}):
        async with session.get(url, headers=headers) as response:
            assert response.status == 204, headers
            assert await response.read() == b""
    async with session.get(url, headers={"Last-Event-ID": f"{epoch}-{last - 2}"}) as response:
        assert response.status == 200
        rest = await read_sse(response, Subscriber(), stop_at_done=2)
    assert rest.ended and rest.seqs == [last - 1, last]
    assert rest.names == ["thread.run.completed", "done"]

    for since, seqs in ((last, []), (last - 2, [last - 1, last])):
        async with session.ws_connect(f"{url}?since={epoch}-{since}") as ws:
            async with asyncio.timeout(WAIT):
                messages = [msg async for msg in ws]
            assert [orjson.loads(m.data)["seq"] for m in messages] == seqs
            assert ws.close_code == aiohttp.WSCloseCode.OK


async def wait_closed(gateway: Gateway, run_id: str) -> None:
    """Until the run's channel has ended (the relay closes it right after the creator's end)."""
    async with asyncio.timeout(WAIT):
        while not (stats := gateway.broker.channel_statistics(f"run:{run_id}")) or not stats.ended:
            await asyncio.sleep(0.01)


def _slow_socket(port: int, path: str) -> socket.socket:
    """A subscriber that sends its request and then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return sock


@pytest.mark.asyncio
async def test_slow_subscriber_is_cut_off_while_others_finish(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        sim={"deltas": 4000, "tokens_per_delta": 150},
        hub={"subscriber_buffer_bytes": 32 * 1024},
        creator_buffer_bytes=64 * 1024 * 1024,
    )
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    port = int(gateway.url.rsplit(":", 1)[1])
    slow = _slow_socket(port, f"/streams/threads/{thread_id}")
    try:
        fast = [
            await sse_subscribe(session, f"{gateway.url}/streams/threads/{thread_id}")
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        stats = gateway.broker.channel_statistics(f"thread:{thread_id}")
        assert stats is not None and stats.subscribers == 3
        async with session.post(
            f"{gateway.v1}/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
            headers=HEADERS,
        ) as response:
            creator = await read_sse(response, Subscriber())
        async with asyncio.timeout(WAIT):
            results = [await task for _, task in fast]
        for sub in results:
            assert [e.data for e in sub.events] == [e.data for e in creator.events]
            assert sub.names.count("thread.message.delta") == 4000
        stats = gateway.broker.channel_statistics(f"thread:{thread_id}")
        assert stats is not None and stats.lagged == 1
    finally:
        slow.close()
        for response, _ in fast:
            response.close()


def _stalled_creator(port: int, thread_id: str, assistant_id: str) -> socket.socket:
    """A creator that starts a streamed run and then reads nothing (a 4 KiB receive buffer)."""
    body = orjson.dumps({"assistant_id": assistant_id, "stream": True})
    creator = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    creator.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    creator.connect(("127.0.0.1", port))
    creator.sendall(
        f"POST /v1/threads/{thread_id}/runs HTTP/1.1\r\nHost: localhost\r\n"
        "Authorization: Bearer sk-caller\r\nOpenAI-Beta: assistants=v2\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return creator


async def _read_whole_body(sock: socket.socket) -> bytes:
    """Everything up to the end of a chunked response, read at full speed from now on."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    received = bytearray()
    async with asyncio.timeout(WAIT):
        while not received.endswith(b"\r\n0\r\n\r\n"):  # end of the chunked body
            chunk = await loop.sock_recv(sock, 1 << 20)
            assert chunk, "connection closed before the end of the body"
            received += chunk
    return bytes(received)


async def _check_lag_notice(
    session: aiohttp.ClientSession, gateway: Gateway, received: bytes
) -> None:
    """The response ends with runcast.lagged naming where to resume, and resuming there works."""
    assert b"event: runcast.lagged\n" in received
    assert b"thread.run.completed" not in received
    notice = received[received.index(b"event: runcast.lagged") :]
    data = orjson.loads(notice.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert data["error"]["code"] == "lagged"
    run_id = data["error"]["message"].split("/streams/runs/")[1].split("?")[0]
    # Nothing given yet: the start ("0"), else the last event's `<epoch>-<seq>`.
    since = f"{data['epoch']}-{data['seq']}" if data["epoch"] else str(data["seq"])
    assert data["error"]["message"].endswith(f"?since={since}")
    async with session.get(f"{gateway.url}/streams/runs/{run_id}", params={"since": since}) as rest:
        resumed = await read_sse(rest, Subscriber())
    first = resumed.events[0]
    if first.event == "runcast.history_lost":  # the run is larger than history holds
        assert first.json()["since"] == since
        assert resumed.events[1].json()["snapshot"]["status"] == "completed"
    else:
        assert first.seq == data["seq"] + 1
        assert resumed.names[-2:] == ["thread.run.completed", "done"]


async def _read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """What a socket still delivers, and how it ended (``eof`` or ``reset``)."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    received = bytearray()
    async with asyncio.timeout(WAIT):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 1 << 20)
            except ConnectionResetError:
                return bytes(received), "reset"
            if not chunk:
                return bytes(received), "eof"
            received += chunk


@pytest.mark.asyncio
async def test_stalled_subscriber_is_reset_without_the_notice_and_resumes_from_history(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """What the README says of a subscriber that stops reading: once it is cut off, runcast.lagged
    is queued behind the bytes it has not read; when they cannot leave within the close timeout
    the connection is closed, so it never sees the notice, only a body that breaks off.
    Resuming from the last id it got brings the rest (here from history)."""
    gateway = await start_gateway(
        # About 12 MB: more than the kernel's send buffer (Linux: up to 4 MiB) and the default
        # 1 MiB subscriber buffer hold, so the cut-off comes with both full.
        sim={"deltas": 4000, "tokens_per_delta": 150},
        hub={"close_timeout": 0.3, "max_history_bytes": 16 << 20},
    )
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    port = int(gateway.url.rsplit(":", 1)[1])
    channel = f"thread:{thread_id}"
    stalled = _slow_socket(port, f"/streams/threads/{thread_id}")
    try:
        async with asyncio.timeout(WAIT):
            while gateway.connections.count(channel) != 1:
                await asyncio.sleep(0.01)
        async with session.post(
            f"{gateway.v1}/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
            headers=HEADERS,
        ) as response:
            creator = await read_sse(response, Subscriber())
        stats = gateway.broker.channel_statistics(channel)
        assert stats is not None and stats.lagged == 1
        # The handler gave up on the last bytes (close timeout) and aborted the connection.
        async with asyncio.timeout(WAIT):
            while gateway.connections.count(channel):
                await asyncio.sleep(0.01)
        received, ending = await _read_until_closed(stalled)
    finally:
        stalled.close()
    # Closed mid-body: the kernel still delivers what it had taken (then FIN), the rest is lost.
    assert ending in ("eof", "reset")
    assert b"runcast.lagged" not in received
    assert not received.endswith(b"\r\n0\r\n\r\n")  # the chunked body never ended
    got = SSEDecoder().feed(received.split(b"\r\n\r\n", 1)[1])  # chunk sizes read as comments
    last_id = got[-1].id
    last = int(last_id.rpartition("-")[2])
    assert 0 < last < len(creator.events)
    async with session.get(
        f"{gateway.url}/streams/threads/{thread_id}", headers={"Last-Event-ID": last_id}
    ) as rest:
        resumed = await read_sse(rest, Subscriber())
    assert resumed.seqs[0] == last + 1 and resumed.names[-1] == "done"
    assert [e.data for e in resumed.events] == [e.data for e in creator.events][last:]


@pytest.mark.asyncio
async def test_slow_creator_is_cut_off_without_slowing_the_run(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        sim={"deltas": 4000, "tokens_per_delta": 150},
        creator_buffer_bytes=64 * 1024,
        creator_write_timeout=0.5,
    )
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    port = int(gateway.url.rsplit(":", 1)[1])
    creator = _stalled_creator(port, thread_id, assistant_id)
    try:
        async with asyncio.timeout(WAIT):
            sub = await subscriber
        assert sub.names.count("thread.message.delta") == 4000
        assert sub.names[-2:] == ["thread.run.completed", "done"]
        # The creator fell behind: its response ends with runcast.lagged naming where to resume.
        await _check_lag_notice(session, gateway, await _read_whole_body(creator))
    finally:
        creator.close()
        response.close()


BIG_ANSWER = {"deltas": 1000, "tokens_per_delta": 800}
"""About 5 MB of text: its ``thread.message.completed`` alone is larger than every default
buffer (creator 4 MiB, subscriber 1 MiB)."""


@pytest.mark.asyncio
async def test_creator_at_full_speed_gets_a_5mb_answer_whole_with_default_limits(
    start_gateway: StartGateway,
) -> None:
    """The SDK reading as fast as it can is never cut off by one large event: every delta, the
    completed message and the run's end reach it."""
    gateway = await start_gateway(sim=BIG_ANSWER)
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk)
        async with asyncio.timeout(WAIT):
            handler = await stream_run(sdk, assistant_id, thread_id)
    finally:
        await sdk.close()
    names = [name for name, _ in handler.seen]
    assert handler.deltas == 1000
    assert names[-3:] == [
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    completed = dict(handler.seen)["thread.message.completed"]
    assert len(completed["content"][0]["text"]["value"]) > 4 << 20


@pytest.mark.asyncio
async def test_stalled_creator_is_cut_off_with_lagged_with_default_limits(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """Twice the answer above: more than the socket, the feed and the room for the completed
    message hold, so a creator that reads nothing is cut off."""
    gateway = await start_gateway(sim={**BIG_ANSWER, "deltas": 2 * BIG_ANSWER["deltas"]})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    creator = _stalled_creator(int(gateway.url.rsplit(":", 1)[1]), thread_id, assistant_id)
    try:
        async with asyncio.timeout(WAIT):
            sub = await subscriber
        assert sub.names[-2:] == ["thread.run.completed", "done"]
        # Reading again (well within --creator-write-timeout) gets what was queued, then the notice.
        await _check_lag_notice(session, gateway, await _read_whole_body(creator))
    finally:
        creator.close()
        response.close()
