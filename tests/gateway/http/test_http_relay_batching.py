"""The relay publishes what one upstream read brought as one batch, and its creator goes first.

A burst (the simulator with no delay between deltas) reaches the gateway many events per read.
A recording sink on the thread's channel sees each batch as the subscribers do; at each batch it
reads the creator's socket (a raw client, on this same loop, so loopback delivery is already
complete), which must already hold every event before the batch.
"""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import orjson
import pytest
from http_helpers import WAIT, Gateway, StartGateway, new_thread, sdk_client, sse_subscribe

from gateway.hub import BufferSink
from gateway.runs.channels import thread_channel
from gateway.upstream.transport import READ_BYTES
from parsers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

_ID = re.compile(rb"^id: \w+-(\d+)$", re.MULTILINE)


class _Creator:
    """The creator's streamed run request on a raw non-blocking socket, read without awaiting."""

    def __init__(self, gateway: Gateway, thread_id: str, assistant_id: str) -> None:
        body = orjson.dumps({"assistant_id": assistant_id, "stream": True})
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(
            f"POST /v1/threads/{thread_id}/runs HTTP/1.1\r\nHost: localhost\r\n"
            "Authorization: Bearer sk-caller\r\nOpenAI-Beta: assistants=v2\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        self.sock.setblocking(False)
        self.received = bytearray()
        self.closed = False

    def drain(self) -> int:
        """Read what has arrived; the highest event id received so far (0 before any)."""
        while not self.closed:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                self.closed = True
            self.received += data
        ids = _ID.findall(self.received)
        return int(ids[-1]) if ids else 0

    def events(self) -> list[ServerSentEvent]:
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return SSEDecoder().feed(_dechunk(body))


class _Recorder(BufferSink):
    """Records each batch the channel writes, and how far the creator was at that moment."""

    def __init__(self, creator: list[_Creator]) -> None:
        super().__init__(buffer_limit=1 << 26)
        self.creator = creator
        self.batches: list[tuple[int, int, int]] = []
        """(first seq, last seq, the creator's highest id then) per batch."""
        self.frames: list[bytes] = []
        """Each batch's frames."""

    def send(self, frames: bytes, last_seq: int) -> bool:
        ids = [int(i) for i in _ID.findall(frames)]
        creator_at = self.creator[0].drain() if self.creator else 0
        self.batches.append((ids[0], last_seq, creator_at))
        self.frames.append(frames)
        return super().send(frames, last_seq)


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while (end := body.find(b"\r\n", pos)) >= 0 and (size := int(body[pos:end], 16)):
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


async def _burst(gateway: Gateway, session: aiohttp.ClientSession) -> tuple[_Recorder, _Creator]:
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    creator: list[_Creator] = []
    recorder = _Recorder(creator)
    await gateway.broker.subscribe(thread_channel(thread_id), recorder, create=True)
    response, task = await sse_subscribe(session, f"{gateway.url}/streams/threads/{thread_id}")
    creator.append(_Creator(gateway, thread_id, assistant_id))
    try:
        async with asyncio.timeout(WAIT):
            while not creator[0].closed:
                creator[0].drain()
                await asyncio.sleep(0.005)
            async with response:
                subscriber = await task
    finally:
        creator[0].sock.close()
    creator_events = creator[0].events()
    events = SSEDecoder().feed(recorder.take())
    # Same seqs, order and bytes for the creator (run channel ids), a subscriber and the hub's
    # own record (thread channel ids: the same seqs in the thread's own epoch).
    assert [(e.id.rpartition("-")[2], e.event, e.data) for e in creator_events] == [
        (e.id.rpartition("-")[2], e.event, e.data) for e in events
    ]
    assert [(r.seq, r.event, r.data) for r in subscriber.events] == [
        (int(e.id.rpartition("-")[2]), e.event, e.data_bytes) for e in events
    ]
    assert [int(e.id.rpartition("-")[2]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done"
    return recorder, creator[0]


@pytest.mark.asyncio
async def test_a_burst_goes_out_in_batches_and_the_creator_is_never_behind(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 300, "delay_ms": 0})
    recorder, _ = await _burst(gateway, session)
    batches = recorder.batches
    events = batches[-1][1]
    assert events > 300
    # Many events per upstream read: far fewer writes than events.
    assert len(batches) < events / 3, batches
    assert max(last - first + 1 for first, last, _ in batches) >= 5
    for (first, _, creator_at), (_, previous_last, _) in zip(
        batches[1:], batches[:-1], strict=True
    ):
        # Batch k+1 reaches the subscribers only once the creator has batch k.
        assert creator_at >= previous_last, (first, creator_at)


@pytest.mark.asyncio
async def test_a_burst_is_published_in_batches_of_one_bounded_read(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # aiohttp hands over whatever it has buffered (64 KiB and more in a burst); each batch is
    # written to every subscriber before the next is read, so at N = 1,000 one such batch kept
    # every subscriber silent for about 100 ms. A read is at most READ_BYTES now.
    gateway = await start_gateway(sim={"deltas": 2000, "delay_ms": 0})
    recorder, _ = await _burst(gateway, session)
    sizes = sorted(len(frames) for frames in recorder.frames)
    assert len(sizes) > 10
    # A batch's frames: a read's events, plus the event the read before it cut, plus runcast's
    # `id:` lines; the one holding the whole message (`thread.message.completed`) is larger.
    assert sizes[-2] < READ_BYTES + 4096, sizes
