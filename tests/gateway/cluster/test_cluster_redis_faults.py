"""Redis faults under two real ``runcast serve`` nodes. Redis restarted without persistence
mid-run: the owner's appends are tried again until Redis is back, so the run goes on, and a
subscriber on the other node resumes into ``runcast.history_lost`` and the snapshot. Redis
stopped for 5 s: ``/readyz`` says 503 naming the broker meanwhile, the nodes reconnect and serve
runs again, no process dies. A node started before its Redis: it serves ``/healthz``, is unready
and refuses runs and subscriptions with 503 until Redis answers, then serves them. Redis unreachable for 6 s mid-run (its data kept): subscribers on
both nodes get ``runcast.degraded``; the owner's keep streaming live, the other node's get what
they missed in order once Redis is back; nothing lost, nothing doubled. Redis refusing writes for
3 s mid-run (out of memory under ``noeviction``, or turned into a replica: ``READONLY``): the
same outage, the owner's creator gets its run whole, the other node's subscriber catches up. A
Redis error that is no outage stopping a relay mid-stream (a channel's key overwritten): its
creator's SDK stream raises on runcast's error event instead of ending as if complete."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
import redis
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, read_sse
from openai import AsyncOpenAI

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


def _upstream_seqs(sub: Subscriber) -> list[int]:
    return [e.seq for e in sub.events if e.seq is not None and not e.event.startswith("runcast.")]


async def test_redis_unreachable_for_six_seconds_mid_run(cluster: Cluster) -> None:
    """Redis down longer than the 5 s retry window (its data kept: a network cut, or a restart
    with persistence) while a run streams. The owner's subscriber goes on live and is told; the
    other node's is told, then gets everything published meanwhile, in order, once Redis is
    back; both get the whole run once, and readiness says 503 meanwhile and 200 after."""
    # ~12 s of deltas: the run ends after Redis is back and its lease's renewal (10 s after the
    # start) falls after it too: the relay's lease calls are not this test's subject.
    await cluster.mock("--deltas", "300", "--delay-ms", "40")
    nodes = [await cluster.node(name) for name in ("a", "b")]
    a, b = (n.url for n in nodes)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
    ) as session:
        creator, run_id, auth = await _start_run(session, a)
        owner, other = Subscriber(), Subscriber()
        responses = [creator]
        readers = [asyncio.create_task(read_sse(creator, whole := Subscriber()))]
        for node, sub in ((a, owner), (b, other)):
            response = await session.get(f"{node}/streams/runs/{run_id}?since=0", headers=auth)
            assert response.status == 200, await response.text()
            responses.append(response)
            readers.append(asyncio.create_task(read_sse(response, sub)))
        try:
            async with asyncio.timeout(WAIT):
                while len(_upstream_seqs(other)) < 10:
                    await asyncio.sleep(0.02)
            cluster.redis.stop(save=True)
            try:
                at_stop = len(_upstream_seqs(owner))
                async with asyncio.timeout(WAIT):
                    while not all("runcast.degraded" in s.names for s in (owner, other)):
                        await asyncio.sleep(0.05)
                states = [await _ready(session, n) for n in (a, b)]
                assert [s[0] for s in states] == [503, 503], states
                assert all("broker" in s[1]["checks"] for s in states), states
                await asyncio.sleep(6)
                live = len(_upstream_seqs(owner)) - at_stop
                stalled = len(_upstream_seqs(other))
                assert [(await _ready(session, n))[0] for n in (a, b)] == [503, 503]
            finally:
                cluster.redis.start()
            back, owned = loop.time(), len(_upstream_seqs(owner))
            async with asyncio.timeout(WAIT):
                while len(_upstream_seqs(other)) < owned:
                    await asyncio.sleep(0.02)
                caught_up = loop.time() - back
                while [(await _ready(session, n))[0] for n in (a, b)] != [200, 200]:
                    await asyncio.sleep(0.1)
                await asyncio.gather(*readers)
        finally:
            for task in readers:
                task.cancel()
            for response in responses:
                response.close()
    # The owner's subscriber kept streaming through the outage (~150 deltas at 25/s); the other
    # node's stood still until Redis was back, then caught up within a reconnect or two.
    assert live >= 60, live
    assert stalled <= 10 + 5, stalled
    assert caught_up < 5, caught_up
    expected = [(e.event, e.data) for e in whole.events]
    assert expected[-1][0] == "done" and "thread.run.completed" in whole.names
    for sub in (owner, other):
        notices = [n for n in sub.names if n in ("runcast.degraded", "runcast.restored")]
        assert notices == ["runcast.degraded", "runcast.restored"], sub.names
        assert sub.upstream == expected
        seqs = _upstream_seqs(sub)
        assert seqs == list(range(1, len(seqs) + 1))
    notice = next(e for e in other.events if e.event == "runcast.degraded").json()
    assert notice["reason"] == "redis_unreachable" and notice["since"] > 0
    assert [n.proc.returncode for n in nodes] == [None, None]


def _refuse_writes(port: int, how: str, *, on: bool) -> None:
    """Make the Redis at ``port`` refuse every write (``on``), or take them again."""
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        if how == "oom":
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1" if on else "0")
        elif on:
            # A replica of a master that is not there: its data stays, writes get READONLY.
            client.replicaof("127.0.0.1", "1")
        else:
            client.replicaof("NO", "ONE")
    finally:
        client.close()


@pytest.mark.parametrize("how", ["oom", "readonly"])
async def test_redis_refusing_writes_mid_run(cluster: Cluster, how: str) -> None:
    """An ``OOM`` or ``READONLY`` answer to an append is an outage, as a lost connection is: the
    owner holds what it publishes and re-appends it once Redis takes writes again, its creator's
    stream runs to ``done`` (before: it ended cleanly, cut short, at the first refused append),
    and ``/readyz`` says 503 ``broker`` meanwhile (before: 200 throughout)."""
    await cluster.mock("--deltas", "200", "--delay-ms", "30")
    nodes = [await cluster.node(name) for name in ("a", "b")]
    a, b = (n.url for n in nodes)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
    ) as session:
        creator, run_id, auth = await _start_run(session, a)
        other = Subscriber()
        follower = await session.get(f"{b}/streams/runs/{run_id}?since=0", headers=auth)
        assert follower.status == 200, await follower.text()
        readers = [
            asyncio.create_task(read_sse(creator, whole := Subscriber())),
            asyncio.create_task(read_sse(follower, other)),
        ]
        try:
            async with asyncio.timeout(WAIT):
                while len(_upstream_seqs(other)) < 10:
                    await asyncio.sleep(0.02)
            _refuse_writes(cluster.redis.port, how, on=True)
            try:
                async with asyncio.timeout(WAIT):
                    while (state := await _ready(session, a))[0] != 503:
                        await asyncio.sleep(0.05)
                assert "broker" in state[1]["checks"], state
                await asyncio.sleep(3)
                assert (await _ready(session, a))[0] == 503
                assert not whole.ended, whole.names[-3:]
            finally:
                _refuse_writes(cluster.redis.port, how, on=False)
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*readers)
                while (await _ready(session, a))[0] != 200:
                    await asyncio.sleep(0.1)
        finally:
            for task in readers:
                task.cancel()
            creator.close()
            follower.close()
    assert whole.names[-1] == "done" and "thread.run.completed" in whole.names, whole.names[-3:]
    assert other.upstream == whole.upstream
    seqs = _upstream_seqs(other)
    assert seqs == list(range(1, len(seqs) + 1))
    assert [n.proc.returncode for n in nodes] == [None, None]


async def _first_events(stream: Any, count: int) -> list[Any]:
    """The first ``count`` events of an SDK stream (the caller goes on reading it)."""
    got = []
    async for event in stream:
        got.append(event)
        if len(got) >= count:
            break
    return got


@pytest.mark.parametrize("kind", ["run", "response", "chat"])
async def test_a_relay_stopped_mid_stream_ends_its_creators_stream_with_an_error(
    cluster: Cluster, kind: str
) -> None:
    """The stream's channel key overwritten with a string mid-stream: Redis answers its append
    with WRONGTYPE, no outage, and the relay stops. Its creator's response had begun: the SDK
    raises on ``runcast.upstream_error`` (a run) or ``runcast.upstream_lost`` (a response, a
    chat completion); before, the stream just ended, as if complete."""
    await cluster.mock("--deltas", "300", "--delay-ms", "20")
    node = await cluster.node("a")
    sdk = AsyncOpenAI(base_url=f"{node.url}/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)
    client = redis.Redis(port=cluster.redis.port, socket_timeout=5)
    try:
        if kind == "run":
            assistant = await sdk.beta.assistants.create(model="gpt-4o")
            thread = await sdk.beta.threads.create()
            raw: Any = await sdk.beta.threads.runs.with_raw_response.create(
                thread.id, assistant_id=assistant.id, stream=True
            )
            channel = f"run:{raw.headers['runcast-run-id']}"
        elif kind == "response":
            raw = await sdk.responses.with_raw_response.create(
                model="gpt-4o", input="hello", stream=True
            )
            channel = f"response:{raw.headers['runcast-response-id']}"
        else:
            raw = await sdk.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}], stream=True
            )
            channel = f"chat:{raw.headers['runcast-completion-id']}"
        stream = raw.parse()
        async with asyncio.timeout(WAIT):
            head = await _first_events(stream, 5)
            client.set(f"rc:{{{channel}}}:meta", "not a hash")
            with pytest.raises(openai.APIError) as raised:
                async for event in stream:
                    head.append(event)
        await stream.close()
    finally:
        client.close()
        await sdk.close()
    body = raised.value.body
    assert isinstance(body, dict), body
    assert "follow it on its channels" in body["message"], body
    assert "WRONGTYPE" not in body["message"] and "127.0.0.1" not in body["message"], body
    async with asyncio.timeout(WAIT):
        while not any("stopped: Redis unreachable" in line for line in node.lines):
            await asyncio.sleep(0.05)
    assert node.proc.returncode is None


async def test_a_node_started_before_its_redis_waits_for_it(cluster: Cluster) -> None:
    """Before: the node exited 1 with a traceback (the broker loaded its scripts and subscribed
    at start), so a cluster whose Redis starts after its nodes crash-looped."""
    await cluster.mock("--deltas", "20", "--delay-ms", "10")
    cluster.redis.stop()
    try:
        node = await cluster.node("a")
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
        ) as session:
            async with session.get(f"{node.url}/healthz") as r:
                assert r.status == 200
            status, body = await _ready(session, node.url)
            assert status == 503 and "broker" in body["checks"], body
            async with session.post(
                f"{node.url}/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS
            ) as r:
                assistant = (await r.json())["id"]
            async with session.post(f"{node.url}/v1/threads", json={}, headers=HEADERS) as r:
                thread = (await r.json())["id"]
            async with session.post(
                f"{node.url}/v1/threads/{thread}/runs",
                json={"assistant_id": assistant, "stream": True},
                headers=HEADERS,
            ) as r:
                assert r.status == 503, await r.text()
                assert (await r.json())["error"]["code"] == "broker_unavailable"
            async with session.get(f"{node.url}/streams/threads/{thread}", headers=HEADERS) as r:
                assert r.status == 503, await r.text()
                assert (await r.json())["error"]["code"] == "broker_unavailable"
            cluster.redis.start()
            async with asyncio.timeout(WAIT):
                while (await _ready(session, node.url))[0] != 200:
                    await asyncio.sleep(0.1)
            creator, _, _ = await _start_run(session, node.url)
            async with asyncio.timeout(WAIT):
                whole = await read_sse(creator, Subscriber())
            creator.close()
    finally:
        if cluster.redis.process is None:
            cluster.redis.start()
    assert whole.names[-1] == "done" and "thread.run.completed" in whole.names
    assert node.proc.returncode is None
