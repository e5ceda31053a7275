"""SIGKILL of the node that owns a run (gateway/runs/takeover.py), with real processes.

Three ``runcast serve`` nodes on one ``redis-server`` and one slow ``runcast mock``, a short
``--lease-ttl``. The run is created through A; SSE subscribers on B and WebSocket ones on C, and
one SSE subscriber on A. A is killed mid-answer: B or C takes the run over once A's lease lapses,
and every surviving subscriber gets ``runcast.recovered``, the complete final message, the
terminal status and ``done``, one gap-free sequence; A's subscriber reconnects to B with its
``Last-Event-ID`` and resumes without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, numbered, read_sse, read_ws

from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio

HEADERS = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"}
LEASE_TTL = 1.5


async def _read_until(response: aiohttp.ClientResponse, count: int) -> list[Received]:
    decoder = SSEDecoder()
    events: list[Received] = []
    async for chunk in response.content.iter_any():
        events.extend(Received.from_sse(sse) for sse in decoder.feed(chunk))
        if len(events) >= count:
            break
    return events


def _text(message: dict[str, Any]) -> str:
    return "".join(part["text"]["value"] for part in message["content"] if part["type"] == "text")


async def _read_sse_timed(
    response: aiohttp.ClientResponse, sub: Subscriber, stamps: dict[str, float]
) -> Subscriber:
    """:func:`read_sse`, noting when the first event of each name arrived."""
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for sse in decoder.feed(chunk):
            sub.events.append(Received.from_sse(sse))
            stamps.setdefault(sse.event, time.monotonic())
            if sse.event == "done":
                return sub
    sub.ended = True
    return sub


async def test_a_killed_owners_run_is_taken_over_and_ends_for_every_subscriber(
    cluster: Cluster,
) -> None:
    await cluster.mock("--deltas", "120", "--delay-ms", "40")
    ttl = ("--lease-ttl", str(LEASE_TTL))
    node_a = await cluster.node("a", *ttl)
    b, c = [(await cluster.node(name, *ttl)).url for name in ("b", "c")]
    a = node_a.url
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    try:
        async with session.post(
            f"{a}/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS
        ) as r:
            assistant = (await r.json())["id"]
        async with session.post(f"{a}/v1/threads", json={}, headers=HEADERS) as r:
            thread_id = (await r.json())["id"]
        creator = await session.post(
            f"{a}/v1/threads/{thread_id}/runs",
            json={"assistant_id": assistant, "stream": True},
            headers=HEADERS,
        )
        assert creator.status == 200, await creator.text()
        run_id = creator.headers["runcast-run-id"]
        token = creator.headers["runcast-subscribe-token"]
        auth = {"Authorization": f"Bearer {token}"}
        url = f"/streams/runs/{run_id}?since=0"
        sse_b = await session.get(f"{b}{url}", headers=auth)
        ws_c = await session.ws_connect(f"{c}{url}&token={token}")
        sse_a = await session.get(f"{a}{url}", headers=auth)
        assert sse_b.status == 200 and sse_a.status == 200
        stamps: dict[str, float] = {}
        readers = [
            asyncio.create_task(_read_sse_timed(sse_b, Subscriber(), stamps)),
            asyncio.create_task(read_ws(ws_c, Subscriber())),
        ]
        async with asyncio.timeout(WAIT):
            head = await _read_until(sse_a, 25)
        node_a.proc.kill()  # SIGKILL: no lease released, no notice to anyone
        killed = time.monotonic()
        await node_a.proc.wait()
        creator.close()
        last_id = next(e.id for e in reversed(head) if e.id)
        # A's subscriber lands on B with its Last-Event-ID.
        resumed = await session.get(
            f"{b}/streams/runs/{run_id}", headers={**auth, "Last-Event-ID": last_id}
        )
        assert resumed.status == 200
        async with asyncio.timeout(WAIT):
            on_b, on_c = await asyncio.gather(*readers)
            tail = await read_sse(resumed, Subscriber())
        for response in (sse_b, sse_a, resumed):
            response.close()
        await ws_c.close()
        # The upstream's own record of the answer.
        async with session.get(
            f"{cluster.upstream}/threads/{thread_id}/messages",
            headers={"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"},
        ) as r:
            assert r.status == 200, await r.text()
            upstream_messages = (await r.json())["data"]
    finally:
        await session.close()

    events = numbered(on_b.events)
    assert numbered(on_c.events) == events
    seqs = [seq for seq, _, _ in events]
    assert None not in seqs and seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    names = [name for _, name, _ in events]
    assert names[-2:] == ["thread.run.completed", "done"]
    assert names.count("done") == 1 and names.count("thread.run.completed") == 1
    recovered = [data for _, name, data in events if name == "runcast.recovered"]
    assert len(recovered) == 1 and recovered[0]["reason"] == "owner_lost"
    assert recovered[0]["status"] == "completed"
    completed = [data for _, name, data in events if name == "thread.message.completed"]
    assert len(completed) == 1
    answer = next(m for m in upstream_messages if m["role"] == "assistant")
    assert _text(completed[0]) == _text(answer) and _text(answer)
    # A's subscriber: what it had, then what B resumed from its Last-Event-ID, is the whole run.
    joined = [e for e in head if e.seq is not None] + tail.events
    assert numbered(joined) == events
    # Within the lease ttl plus the watcher's tick and the upstream's remaining answer.
    took = stamps["done"] - killed
    print(
        f"failover: runcast.recovered {stamps['runcast.recovered'] - killed:.2f}s and done "
        f"{took:.2f}s on B after SIGKILL (lease ttl {LEASE_TTL}s)"
    )
    assert took < LEASE_TTL + 8
    assert orjson.loads(orjson.dumps(recovered[0]))["missed"]["messages"] == 1
