"""Three real ``runcast serve`` nodes (A, B, C) on one ``redis-server`` and one ``runcast mock``.

A run created through A with the official SDK is followed on B over SSE and on C over WebSocket:
every subscriber gets the creator's sequence, gap-free; a subscriber cut on B resumes on C with
its ``Last-Event-ID``; the snapshots agree on every node; a token minted by A is honoured by B.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, numbered, read_sse, read_ws
from openai import AsyncOpenAI

from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio


async def _read_until(response: aiohttp.ClientResponse, count: int) -> list[Received]:
    """The first ``count`` events of an SSE response (then the caller cuts it)."""
    decoder = SSEDecoder()
    events: list[Received] = []
    async for chunk in response.content.iter_any():
        events.extend(Received.from_sse(sse) for sse in decoder.feed(chunk))
        if len(events) >= count:
            break
    return events


async def test_a_run_created_on_a_is_followed_resumed_and_snapshotted_on_b_and_c(
    cluster: Cluster,
) -> None:
    await cluster.mock("--deltas", "80", "--delay-ms", "15")
    a, b, c = [(await cluster.node(name)).url for name in ("a", "b", "c")]
    sdk = AsyncOpenAI(base_url=f"{a}/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    try:
        assistant = await sdk.beta.assistants.create(model="gpt-4o")
        thread = await sdk.beta.threads.create()
        raw = await sdk.beta.threads.runs.with_raw_response.create(
            thread.id, assistant_id=assistant.id, stream=True
        )
        run_id = raw.headers["runcast-run-id"]
        auth = {"Authorization": f"Bearer {raw.headers['runcast-subscribe-token']}"}
        # A token minted by A through POST /tokens, used on B.
        async with session.post(
            f"{a}/tokens",
            json={"run_id": run_id},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as minted:
            assert minted.status == 200, await minted.text()
            token_b = {"Authorization": f"Bearer {(await minted.json())['token']}"}

        url = "/streams/runs/" + run_id
        sse_b = [await session.get(f"{b}{url}?since=0", headers=h) for h in (auth, token_b)]
        assert [r.status for r in sse_b] == [200, 200]
        ws_c = [
            await session.ws_connect(f"{c}{url}?since=0&token={auth['Authorization'][7:]}")
            for _ in range(2)
        ]
        readers = [asyncio.create_task(read_sse(r, Subscriber())) for r in sse_b]
        readers += [asyncio.create_task(read_ws(ws, Subscriber())) for ws in ws_c]
        # One more subscriber on B, cut after 10 events while the run streams, resumed on C.
        cut = await session.get(f"{b}{url}?since=0", headers=auth)
        assert cut.status == 200
        async with asyncio.timeout(WAIT):
            head = await _read_until(cut, 10)
        cut.close()
        last_id = next(e.id for e in reversed(head) if e.id)
        resumed = await session.get(f"{c}{url}", headers={**auth, "Last-Event-ID": last_id})
        assert resumed.status == 200

        async with asyncio.timeout(WAIT):
            created = [e.event async for e in raw.parse()]
            subscribers = await asyncio.gather(*readers)
            tail = await read_sse(resumed, Subscriber())
        for response in (*sse_b, resumed):
            response.close()
        for ws in ws_c:
            await ws.close()
        snapshots = []
        for node in (a, b, c):
            async with session.get(f"{node}{url}/snapshot", headers=auth) as snapshot:
                assert snapshot.status == 200, await snapshot.text()
                snapshots.append(await snapshot.json())
    finally:
        await sdk.close()
        await session.close()

    first = numbered(subscribers[0].events)
    assert first[-1][1] == "done" and len(created) > 80
    seqs = [seq for seq, _, _ in first if seq is not None]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free from the first event
    assert {e.id.rpartition("-")[0] for e in subscribers[0].events if e.id} != {""}
    assert len({e.id.rpartition("-")[0] for e in subscribers[0].events if e.id}) == 1
    for other in subscribers[1:]:
        assert numbered(other.events) == first
    # The SDK's run events (the creator's view) are the subscribers' events.
    assert [name for _, name, _ in first[: len(created)]] == created
    # Cut on B, resumed on C: no gap, no duplicate.
    joined = [e for e in head if e.seq is not None] + tail.events
    assert numbered(joined) == first
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert snapshots[0]["seq"] == seqs[-1]
