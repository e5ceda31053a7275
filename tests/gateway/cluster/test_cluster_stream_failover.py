"""SIGKILL of the node pumping a Responses or Chat stream (StreamRelay takeover), real processes.

Two ``runcast serve`` nodes on one ``redis-server`` and a slow ``runcast mock``, a short
``--lease-ttl``. The stream is created through A, an SSE subscriber follows it on B, and A is
killed mid-stream: B takes the stream over once A's lease lapses. A background response goes on
from where A stopped (one gap-free, duplicate-free stream through ``response.completed``); a
chat stream ends with ``runcast.upstream_lost`` ``reason: "owner_lost"`` and its channel closes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received

from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
LEASE_TTL = 1.5
SLOW_MOCK = ("--deltas", "150", "--delay-ms", "25")
"""About 4 s of stream: A dies in its first second."""


async def _read_stamped(
    response: aiohttp.ClientResponse, *, stop: int | None = None, until: str | None = None
) -> list[tuple[float, Received]]:
    """SSE events with their arrival times, to the end of the body (or ``stop`` events, or the
    event named ``until``)."""
    decoder = SSEDecoder()
    events: list[tuple[float, Received]] = []
    async for chunk in response.content.iter_any():
        now = time.monotonic()
        events.extend((now, Received.from_sse(sse)) for sse in decoder.feed(chunk))
        if stop is not None and len(events) >= stop:
            break
        if until is not None and any(event.event == until for _, event in events):
            break
    return events


async def _start(
    cluster: Cluster, mock: tuple[str, ...] = SLOW_MOCK
) -> tuple[Any, str, aiohttp.ClientSession]:
    await cluster.mock(*mock)
    ttl = ("--lease-ttl", str(LEASE_TTL))
    node_a = await cluster.node("a", *ttl)
    b = (await cluster.node("b", *ttl)).url
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    return node_a, b, session


async def test_a_killed_owners_background_response_goes_on_from_where_it_stopped(
    cluster: Cluster,
) -> None:
    node_a, b, session = await _start(cluster)
    try:
        creator = await session.post(
            f"{node_a.url}/v1/responses",
            json={
                "model": "gpt-5",
                "input": "Weather in Oslo?",
                "background": True,
                "stream": True,
            },
            headers=HEADERS,
        )
        assert creator.status == 200, await creator.text()
        response_id = creator.headers["runcast-response-id"]
        token = creator.headers["runcast-subscribe-token"]
        on_b = await session.get(
            f"{b}/streams/responses/{response_id}?since=0",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert on_b.status == 200
        reader = asyncio.create_task(_read_stamped(on_b))
        async with asyncio.timeout(WAIT):
            await _read_stamped(creator, stop=15)
        node_a.proc.kill()  # SIGKILL: no lease released, no notice to anyone
        killed = time.monotonic()
        await node_a.proc.wait()
        creator.close()
        async with asyncio.timeout(WAIT):
            stamped = await reader
        on_b.close()
        async with session.get(f"{cluster.upstream}/responses/{response_id}", headers=HEADERS) as r:
            final = await r.json()
    finally:
        await session.close()
    events = [event for _, event in stamped]
    data = [event.json() for event in events]
    # Every event once, in order, through the last word; the channel then ends (body closed).
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert data[-1]["type"] == "response.completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    text = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    upstream_text = "".join(
        part["text"] for item in final["output"] for part in item.get("content", [])
    )
    assert final["status"] == "completed" and text == upstream_text
    # B took over within a few lease ttls of the kill (reported by the brief's figure).
    after = [at for at, _ in stamped if at > killed]
    assert after, "nothing reached B after the kill"
    gap = max(later - earlier for earlier, later in zip([killed, *after], after, strict=False))
    print(f"takeover gap seen by B: {gap:.2f}s (lease ttl {LEASE_TTL}s)")
    assert gap < 4 * LEASE_TTL


async def test_a_killed_owners_chat_stream_ends_with_owner_lost(cluster: Cluster) -> None:
    node_a, b, session = await _start(cluster)
    try:
        creator = await session.post(
            f"{node_a.url}/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            },
            headers=HEADERS,
        )
        assert creator.status == 200, await creator.text()
        completion_id = creator.headers["runcast-completion-id"]
        token = creator.headers["runcast-subscribe-token"]
        on_b = await session.get(
            f"{b}/streams/chat/{completion_id}?since=0",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert on_b.status == 200
        reader = asyncio.create_task(_read_stamped(on_b))
        async with asyncio.timeout(WAIT):
            await _read_stamped(creator, stop=10)
        node_a.proc.kill()
        await node_a.proc.wait()
        creator.close()
        async with asyncio.timeout(WAIT):
            stamped = await reader  # to the end of the body: the channel closed
        on_b.close()
    finally:
        await session.close()
    events = [event for _, event in stamped]
    assert events[-1].event == "runcast.upstream_lost"
    lost = events[-1].json()
    assert (lost["reason"], lost["kind"], lost["id"]) == ("owner_lost", "chat", completion_id)
    assert lost["error"]["code"] == "upstream_lost"
    # Chunks only before it, no [DONE]: the answer was not finished.
    assert all(e.event == "message" for e in events[:-1]) and len(events) > 10
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_killed_owners_stored_response_is_polled_to_its_end_in_every_channel(
    cluster: Cluster,
) -> None:
    node_a, b, session = await _start(cluster)
    opened: list[aiohttp.ClientResponse] = []
    try:
        creator = await session.post(
            f"{node_a.url}/v1/responses",
            json={"model": "gpt-5", "input": "Weather in Oslo?", "stream": True},
            headers={**HEADERS, "Runcast-Channel": "ops"},
        )
        assert creator.status == 200, await creator.text()
        response_id = creator.headers["runcast-response-id"]
        subscriptions = [
            (f"responses/{response_id}", creator.headers["runcast-subscribe-token"]),
            ("channels/ops", creator.headers["runcast-channel-token"]),
        ]
        readers = []
        for path, token in subscriptions:
            on_b = await session.get(
                f"{b}/streams/{path}?since=0", headers={"Authorization": f"Bearer {token}"}
            )
            opened.append(on_b)
            assert on_b.status == 200
            until = "response.completed" if path == "channels/ops" else None
            readers.append(asyncio.create_task(_read_stamped(on_b, until=until)))
        async with asyncio.timeout(WAIT):
            await _read_stamped(creator, stop=15)
        node_a.proc.kill()
        await node_a.proc.wait()
        creator.close()
        async with asyncio.timeout(WAIT):
            own = [event for _, event in await readers[0]]  # to its end: the channel closed
            named = await readers[1]  # a named channel stays open: read what it holds so far
    finally:
        for response in opened:
            response.close()
        await session.close()
    names = [event.event for event in own]
    assert names[-2:] == ["runcast.recovered", "response.completed"]
    recovered = own[-2].json()
    assert (recovered["reason"], recovered["id"]) == ("owner_lost", response_id)
    assert recovered["cursor"] == own[-3].json()["sequence_number"]
    assert [e.seq for e in own] == list(range(1, len(own) + 1))
    assert [event.data for _, event in named][-2:] == [e.data for e in own[-2:]]


async def test_a_paused_owner_that_wakes_up_after_the_takeover_publishes_nothing_more(
    cluster: Cluster,
) -> None:
    # About 7.5 s of stream: A wakes up while B still pumps it (B holds the lease).
    node_a, b, session = await _start(cluster, ("--deltas", "300", "--delay-ms", "25"))
    opened: list[aiohttp.ClientResponse] = []
    try:
        creator = await session.post(
            f"{node_a.url}/v1/responses",
            json={
                "model": "gpt-5",
                "input": "Weather in Oslo?",
                "background": True,
                "stream": True,
            },
            headers=HEADERS,
        )
        opened.append(creator)
        assert creator.status == 200, await creator.text()
        response_id = creator.headers["runcast-response-id"]
        token = creator.headers["runcast-subscribe-token"]
        on_b = await session.get(
            f"{b}/streams/responses/{response_id}?since=0",
            headers={"Authorization": f"Bearer {token}"},
        )
        opened.append(on_b)
        assert on_b.status == 200
        reader = asyncio.create_task(_read_stamped(on_b))
        async with asyncio.timeout(WAIT):
            creator_events = await _read_stamped(creator, stop=15)
        node_a.proc.send_signal(signal.SIGSTOP)  # A keeps its sockets but stops renewing
        await asyncio.sleep(2 * LEASE_TTL)  # B takes the stream over meanwhile
        node_a.proc.send_signal(signal.SIGCONT)
        woke = time.monotonic()
        async with asyncio.timeout(WAIT):
            # A's creator is told, and its response ends (long before the stream does)
            creator_events += await _read_stamped(creator)
            stamped = await reader
        await asyncio.sleep(LEASE_TTL)  # A's late publishes, if it made any, would be in the log
        async with session.get(
            f"{b}/streams/responses/{response_id}?since=0",
            headers={"Authorization": f"Bearer {token}"},
        ) as replay:
            replayed = await _read_stamped(replay)
    finally:
        for response in opened:
            response.close()
        await session.close()
    assert node_a.proc.returncode is None  # A lives on: it only lost the stream
    told = creator_events[-1][1]
    assert told.event == "runcast.upstream_lost", told
    assert told.json()["reason"] == "owner_changed" and told.json()["error"]["message"]
    assert stamped[-1][0] > woke + 1.0  # A woke up well before the stream's end
    data = [event.json() for _, event in stamped]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert data[-1]["type"] == "response.completed"
    # The channel's log holds exactly that: nothing A pumped after it woke up.
    assert [event.data for _, event in replayed] == [event.data for _, event in stamped]


async def test_a_stopping_owners_background_response_is_left_to_another_node(
    cluster: Cluster,
) -> None:
    # SIGTERM with --drain-timeout 0: A cancels its relay at once, mid-stream.
    await cluster.mock(*SLOW_MOCK)
    ttl = ("--lease-ttl", str(LEASE_TTL))
    node_a = await cluster.node("a", *ttl, "--drain-timeout", "0")
    b = (await cluster.node("b", *ttl)).url
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    opened: list[aiohttp.ClientResponse] = []
    try:
        creator = await session.post(
            f"{node_a.url}/v1/responses",
            json={
                "model": "gpt-5",
                "input": "Weather in Oslo?",
                "background": True,
                "stream": True,
            },
            headers=HEADERS,
        )
        opened.append(creator)
        assert creator.status == 200, await creator.text()
        response_id = creator.headers["runcast-response-id"]
        token = creator.headers["runcast-subscribe-token"]
        on_b = await session.get(
            f"{b}/streams/responses/{response_id}?since=0",
            headers={"Authorization": f"Bearer {token}"},
        )
        opened.append(on_b)
        assert on_b.status == 200
        reader = asyncio.create_task(_read_stamped(on_b))
        async with asyncio.timeout(WAIT):
            await _read_stamped(creator, stop=15)
            node_a.proc.terminate()
            assert await node_a.proc.wait() == 0
            stamped = await reader
    finally:
        for response in opened:
            response.close()
        await session.close()
    data = [event.json() for _, event in stamped]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert data[-1]["type"] == "response.completed"
