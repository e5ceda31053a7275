"""Redis faults under two real ``runcast serve`` nodes. Redis restarted without persistence
mid-run: the owner's appends are tried again until Redis is back, so the run goes on, and a
subscriber on the other node resumes into ``runcast.history_lost`` and the snapshot. Redis
stopped for 5 s: ``/readyz`` says 503 naming the broker meanwhile, the nodes reconnect and serve
runs again, no process dies."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, read_sse

from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio

HEADERS = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"}


async def _start_run(
    session: aiohttp.ClientSession, node: str
) -> tuple[aiohttp.ClientResponse, str, dict[str, str]]:
    async with session.post(
        f"{node}/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS
    ) as r:
        assistant = (await r.json())["id"]
    async with session.post(f"{node}/v1/threads", json={}, headers=HEADERS) as r:
        thread = (await r.json())["id"]
    creator = await session.post(
        f"{node}/v1/threads/{thread}/runs",
        json={"assistant_id": assistant, "stream": True},
        headers=HEADERS,
    )
    assert creator.status == 200, await creator.text()
    token = creator.headers["runcast-subscribe-token"]
    return creator, creator.headers["runcast-run-id"], {"Authorization": f"Bearer {token}"}


async def _events(response: aiohttp.ClientResponse, count: int, into: list[Received]) -> None:
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        into.extend(Received.from_sse(sse) for sse in decoder.feed(chunk))
        if len(into) >= count:
            return


async def _ready(session: aiohttp.ClientSession, node: str) -> tuple[int, Any]:
    async with session.get(f"{node}/readyz") as r:
        return r.status, await r.json()


async def test_redis_restarted_mid_run(cluster: Cluster) -> None:
    await cluster.mock("--deltas", "150", "--delay-ms", "20")
    nodes = [await cluster.node(name) for name in ("a", "b")]
    a, b = (n.url for n in nodes)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
    ) as session:
        creator, run_id, auth = await _start_run(session, a)
        url = f"{b}/streams/runs/{run_id}"
        first = await session.get(f"{url}?since=0", headers=auth)
        head: list[Received] = []
        async with asyncio.timeout(WAIT):
            await _events(first, 10, head)
        cluster.redis.stop()
        cluster.redis.start()
        async with asyncio.timeout(WAIT):
            cut = await read_sse(first, Subscriber(events=head))
            whole = await read_sse(creator, Subscriber())
        first.close()
        creator.close()
        last = next(e.id for e in reversed(cut.events) if e.id)
        async with session.get(url, headers={**auth, "Last-Event-ID": last}) as resumed:
            assert resumed.status == 200, (
                await resumed.text(),
                cut.names[-3:],
                cut.ended,
                whole.names[-3:],
                "".join(nodes[0].lines[-30:]),
                "".join(nodes[1].lines[-30:]),
            )
            async with asyncio.timeout(WAIT):
                after = await read_sse(resumed, Subscriber())
    # The creator on A saw the run to its end through the restart; B's subscriber was cut and
    # its resume got history_lost, then the new epoch's snapshot: the finished run, whole text.
    assert whole.names[-1] == "done" and "thread.run.completed" in whole.names
    assert cut.ended and "done" not in cut.names, cut.names[-3:]
    assert after.names[:2] == ["runcast.history_lost", "runcast.snapshot"], after.names[:3]
    assert not after.names[2:] or after.names[-1] == "done", after.names
    snapshot = after.events[1].json()
    assert snapshot["epoch"] not in {e.id.rpartition("-")[0] for e in cut.events if e.id}
    assert snapshot["snapshot"]["status"] == "completed"
    completed = [e.json() for e in whole.events if e.event == "thread.message.completed"]
    assert [m["content"] for m in snapshot["snapshot"]["messages"]] == [completed[-1]["content"]]


async def test_redis_stopped_for_five_seconds(cluster: Cluster) -> None:
    await cluster.mock("--deltas", "20", "--delay-ms", "10")
    nodes = [await cluster.node(name) for name in ("a", "b")]
    a, b = (n.url for n in nodes)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
    ) as session:
        assert [await _ready(session, n) for n in (a, b)] == [(200, {"status": "ready"})] * 2
        cluster.redis.stop()
        try:
            async with asyncio.timeout(WAIT):
                while (state := await _ready(session, b))[0] != 503:
                    await asyncio.sleep(0.1)
            assert "broker" in state[1]["checks"], state
            await asyncio.sleep(5)
            assert (await _ready(session, a))[0] == 503
        finally:
            cluster.redis.start()
        async with asyncio.timeout(WAIT):
            while [(await _ready(session, n))[0] for n in (a, b)] != [200, 200]:
                await asyncio.sleep(0.1)
        # Both nodes serve a run across each other again.
        creator, run_id, auth = await _start_run(session, a)
        async with session.get(f"{b}/streams/runs/{run_id}?since=0", headers=auth) as follower:
            assert follower.status == 200, (await follower.text(), "".join(nodes[1].lines[-20:]))
            async with asyncio.timeout(WAIT):
                seen = await read_sse(follower, Subscriber())
                whole = await read_sse(creator, Subscriber())
        creator.close()
    assert seen.names == whole.names and whole.names[-1] == "done"
    assert seen.seqs == list(range(1, len(seen.seqs) + 1))
    assert [n.proc.returncode for n in nodes] == [None, None]
