"""EventStream: SSE events of any protocol, a clean end of body as ``[]``, a cut raised after the
events read before it, an HTTP error or a JSON answer refused at open, over real sockets."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import tracemalloc

import pytest

from gateway.errors import UpstreamConnectionError, UpstreamHTTPError
from gateway.upstream import UpstreamClient
from gateway.upstream.events import EventStream
from parsers.errors import RemoteProtocolError
from parsers.sse import ServerSentEvent

from .servers import (
    COMMENTS,
    FakeUpstream,
    RawServerFactory,
    chunked,
    loop_turns,
    make_settings,
    reply_gzip,
    reply_json,
    reply_sse,
    turns_between_reads,
)

BODY = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
    b'data: {"type":"keepalive","sequence_number":1}\n\n'
    b"data: [DONE]\n\n"
)


def _open(client: UpstreamClient) -> EventStream:
    return EventStream(
        lambda: client.open_stream("POST", "/responses", body=b"{}", api_key=None, headers=None)
    )


async def _all(stream: EventStream) -> list[ServerSentEvent]:
    out: list[ServerSentEvent] = []
    while batch := await stream.read_batch():
        out.extend(batch)
    return out


@pytest.mark.asyncio
async def test_events_in_order_then_a_clean_end(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", "/responses", reply_sse(BODY, chunks=[7]))
    async with _open(client) as stream:
        events = await _all(stream)
        assert await stream.read_batch() == []
    assert [e.event for e in events] == ["response.created", "message", "message"]
    assert events[-1].data_bytes == b"[DONE]"
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_a_cut_is_raised_after_the_events_before_it(raw_server: RawServerFactory) -> None:
    server = await raw_server(lambda head, body: chunked(BODY[:70], BODY[70:90], final=False))
    async with UpstreamClient(make_settings(server.base_url)) as client, _open(client) as stream:
        first = await stream.read_batch()
        with pytest.raises(UpstreamConnectionError):
            await _all(stream)
    assert [e.event for e in first] == ["response.created"]


@pytest.mark.asyncio
async def test_http_error_and_json_answers_are_refused_at_open(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", "/responses", reply_json(400, {"error": {"message": "no"}}))
    with pytest.raises(UpstreamHTTPError) as caught:
        async with _open(client):
            pass
    assert caught.value.status == 400
    upstream.route("POST", "/responses", reply_json(200, {"id": "resp_1"}))
    with pytest.raises(RemoteProtocolError):
        async with _open(client):
            pass


@pytest.mark.asyncio
async def test_reads_without_events_give_the_loop_a_turn(
    upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gzip body of comment lines: tens of KB on the wire, aiohttp hands it out decompressed in
    # large buffered pieces that read at once. Reading them back to back held the event loop
    # (health checks, every other run) for the whole body: 7 s for 64 MiB.
    upstream.route("POST", "/responses", reply_gzip(COMMENTS + b"data: {}\n\n"))
    async with loop_turns(monkeypatch) as seen, _open(client) as stream:
        events = await stream.read_batch()
    assert [e.data_bytes for e in events] == [b"{}"]
    assert turns_between_reads(seen)


@pytest.mark.asyncio
@pytest.mark.parametrize("gap", [0.02, 0.3], ids=["right after", "while waiting"])
async def test_a_broken_chunked_body_is_a_cut_at_once(gap: float) -> None:
    # aiohttp closes the connection on a chunk-size line it cannot parse, but tells the body's
    # reader nothing: one already waiting waited for the whole idle timeout (2 min by default),
    # one arriving after got a bare RuntimeError("Connection closed.").
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)  # the body, b"{}"
        writer.write(chunked(BODY[: BODY.index(b"\n\n") + 2], final=False))
        await writer.drain()
        await asyncio.sleep(gap)
        writer.write(b"zz-not-a-size\r\nxxxx\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(f"http://127.0.0.1:{port}/v1", idle_timeout=30.0)
    try:
        async with UpstreamClient(settings) as client, _open(client) as stream:
            first = await stream.read_batch()
            assert [e.event for e in first] == ["response.created"]
            async with asyncio.timeout(5):
                with pytest.raises(UpstreamConnectionError):
                    await stream.read_batch()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_connection_reset_mid_body_leaves_no_unretrieved_future(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Watching the connection's close (above) asks aiohttp for a future it then ends with the
    # reset: never retrieved, asyncio logged it as an error when it was collected.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(chunked(BODY[: BODY.index(b"\n\n") + 2], final=False))
        await writer.drain()
        await asyncio.sleep(0.2)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with UpstreamClient(make_settings(f"http://127.0.0.1:{port}/v1")) as client:
            async with _open(client) as stream:
                await stream.read_batch()
                with pytest.raises(UpstreamConnectionError):
                    await stream.read_batch()
            del stream
    finally:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0.05)
    gc.collect()
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.asyncio
async def test_a_line_over_the_limit_leaves_nothing_held_once_its_error_is_handled(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # The error kept the decoder's frames, and the line that overflowed, in reference cycles:
    # runcast serve grew by 16 MiB per such stream (5.7 GB in 20 s against an upstream sending
    # endless lines) until the cycle collector ran.
    line = b"data: " + b"x" * (3 << 20) + b"\n\n"
    upstream.route("POST", "/responses", reply_sse(line, chunks=[65536] * 60))

    async def fail_once() -> None:
        stream = EventStream(
            lambda: client.open_stream(
                "POST", "/responses", body=b"{}", api_key=None, headers=None
            ),
            max_event_bytes=1 << 20,
        )
        async with stream:
            with pytest.raises(RemoteProtocolError):
                await _all(stream)

    await fail_once()  # the pool and the loop's own allocations settle first
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(3):
            await fail_once()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 512 << 10, f"{held} bytes still held"
