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
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, numbered, read_sse, read_ws
from tool_helpers import SIM_DEFAULTS, WEATHER, SimLog, _record_submissions, quoted

from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.tools import verify_signature
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


WEBHOOK_SECRET = "webhook-secret-for-the-failover-test"


class SlowWebhook:
    """A tool webhook that holds its first call long enough for its caller to be killed."""

    def __init__(self, hold: float) -> None:
        self.calls: list[str] = []
        self.entered = asyncio.Event()
        self._hold = hold

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        assert verify_signature(
            WEBHOOK_SECRET, headers["Runcast-Timestamp"], body, headers["Runcast-Signature"]
        )
        call_id = orjson.loads(body)["tool_call_id"]
        self.calls.append(call_id)
        if len(self.calls) == 1:
            self.entered.set()
            await asyncio.sleep(self._hold)
        return web.json_response({"output": f"sunny ({call_id})"})


@pytest_asyncio.fixture
async def slow_tools() -> AsyncIterator[tuple[str, SimLog, str, SlowWebhook]]:
    """(simulator URL, its submission log, webhook URL, the webhook)."""
    log, hook = SimLog(), SlowWebhook(hold=4.0)
    sim_app = create_simulator(MockSettings(**{**SIM_DEFAULTS, "deltas": 20, "delay_ms": 10}))
    _record_submissions(sim_app, log)
    hook_app = web.Application()
    hook_app.router.add_post("/tools", hook.handle)
    runners = []
    try:
        for app in (sim_app, hook_app):
            runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        sim_port, hook_port = (r.addresses[0][1] for r in runners)
        yield f"http://127.0.0.1:{sim_port}/v1", log, f"http://127.0.0.1:{hook_port}/tools", hook
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def test_the_owner_killed_while_its_tool_handler_runs_the_action_is_submitted_once(
    cluster: Cluster, slow_tools: tuple[str, SimLog, str, SlowWebhook]
) -> None:
    upstream, sim, hook_url, hook = slow_tools
    cluster.use_upstream(upstream)
    argv = (
        "--lease-ttl",
        str(LEASE_TTL),
        "--tool-webhook",
        f"get_weather={hook_url}",
        "--tool-webhook-secret",
        WEBHOOK_SECRET,
    )
    node_a = await cluster.node("a", *argv)
    b, c = [(await cluster.node(name, *argv)).url for name in ("b", "c")]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    try:
        async with session.post(
            f"{node_a.url}/v1/assistants",
            json={"model": "gpt-4o", "tools": [WEATHER]},
            headers=HEADERS,
        ) as r:
            assistant = (await r.json())["id"]
        async with session.post(f"{node_a.url}/v1/threads", json={}, headers=HEADERS) as r:
            thread_id = (await r.json())["id"]
        creator = await session.post(
            f"{node_a.url}/v1/threads/{thread_id}/runs",
            json={
                "assistant_id": assistant,
                "stream": True,
                "metadata": {"mock_scenario": "tool_call"},
            },
            headers=HEADERS,
        )
        assert creator.status == 200, await creator.text()
        run_id = creator.headers["runcast-run-id"]
        token = creator.headers["runcast-subscribe-token"]
        url = f"/streams/runs/{run_id}?since=0&token={token}"
        sse = await session.get(f"{b}{url}")
        assert sse.status == 200
        ws = await session.ws_connect(f"{c}{url}")
        readers = [
            asyncio.create_task(read_sse(sse, Subscriber())),
            asyncio.create_task(read_ws(ws, Subscriber())),
        ]
        async with asyncio.timeout(WAIT):
            await hook.entered.wait()  # A's handler is running
        node_a.proc.kill()
        await node_a.proc.wait()
        creator.close()
        async with asyncio.timeout(WAIT):
            on_b, on_c = await asyncio.gather(*readers)
        sse.close()
        await ws.close()
    finally:
        await session.close()

    # One submission reached the simulator; the handler ran at most twice, with one key.
    assert sim.requests == [run_id] and len(sim.accepted) == 1
    (call_id,) = sim.accepted[0][1]
    assert 1 <= len(hook.calls) <= 2 and set(hook.calls) == {call_id}
    events = numbered(on_b.events)
    assert numbered(on_c.events) == events
    seqs = [seq for seq, _, _ in events]
    assert None not in seqs and seqs == list(range(1, len(seqs) + 1))
    names = [name for _, name, _ in events]
    assert names[-2:] == ["thread.run.completed", "done"]
    assert names.count("thread.run.requires_action") == 1  # not published again by the taker
    assert "runcast.tool_automation.unknown" not in names
    recovered = [data for _, name, data in events if name == "runcast.recovered"]
    assert len(recovered) == 1 and recovered[0]["status"] == "requires_action"
    text = b"".join(e.data for e in on_b.events if e.event == "thread.message.completed")
    assert quoted("get_weather", f"sunny ({call_id})") in text.decode()
