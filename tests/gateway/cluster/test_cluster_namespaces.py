"""Two clusters on one Redis db, apart by ``--redis-namespace``, and the warning when two nodes of
one namespace relay to different upstreams.

Cluster A and cluster B (each its own ``runcast mock``) share a ``redis-server`` and a token
secret: a run created through A is unknown to B's node (404, its channel lives under A's keys),
and when A's only node dies mid-run, B's node does not take the run over (before, every key had
the fixed prefix ``rc``: B took A's runs over, its upstream answered 404, and it ended them with
``runcast.upstream_error`` although they completed upstream). Two nodes of one namespace whose
``--upstream`` differs: the later one logs a warning naming the other.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis
from cluster_helpers import API_KEY, Cluster, Process
from http_helpers import WAIT

pytestmark = pytest.mark.asyncio

HEADERS = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"}
LEASE_TTL = "1"


async def _clashes(node: Process, count: int, within: float = 5.0) -> list[str]:
    """The node's clash warnings, once there are ``count`` of them (or ``within`` passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        clash = [line for line in node.lines if "relays to another upstream" in line]
        if len(clash) >= count or loop.time() > deadline:
            return clash
        await asyncio.sleep(0.05)


async def test_two_clusters_on_one_redis_keep_apart(cluster: Cluster) -> None:
    ttl = ("--lease-ttl", LEASE_TTL)
    await cluster.mock("--deltas", "200", "--delay-ms", "20")
    node_a = await cluster.node("a", "--redis-namespace", "cluster-a", *ttl)
    await cluster.mock("--deltas", "10", "--delay-ms", "5")
    node_b = await cluster.node("b", "--redis-namespace", "cluster-b", *ttl)
    a, b = node_a.url, node_b.url
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT)
    ) as session:
        async with session.post(
            f"{a}/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS
        ) as r:
            assistant = (await r.json())["id"]
        async with session.post(f"{a}/v1/threads", json={}, headers=HEADERS) as r:
            thread = (await r.json())["id"]
        creator = await session.post(
            f"{a}/v1/threads/{thread}/runs",
            json={"assistant_id": assistant, "stream": True},
            headers=HEADERS,
        )
        assert creator.status == 200, await creator.text()
        run_id = creator.headers["runcast-run-id"]
        auth = {"Authorization": f"Bearer {creator.headers['runcast-subscribe-token']}"}
        async with session.get(f"{a}/streams/runs/{run_id}?since=0", headers=auth) as r:
            assert r.status == 200
        for path in (f"/streams/runs/{run_id}?since=0", f"/streams/runs/{run_id}/snapshot"):
            async with session.get(f"{b}{path}", headers=auth) as r:
                assert r.status == 404, (path, r.status, await r.text())
        await creator.content.readany()
        node_a.proc.kill()  # SIGKILL: its lease lapses, its run stays recorded as live
        creator.close()
        # Several lease periods: a node of the same namespace would have taken it over by now.
        await asyncio.sleep(4 * float(LEASE_TTL))
    taken = [line for line in node_b.lines if run_id in line and "aiohttp.access" not in line]
    assert not taken, taken
    assert node_b.proc.returncode is None
    client = redis.Redis(port=cluster.redis.port, socket_timeout=5)
    try:
        keys = {k.decode() for k in client.keys("*")}
    finally:
        client.close()
    assert any(k.startswith(f"cluster-a:{{run:{run_id}}}") for k in keys), sorted(keys)
    assert any(k.startswith("cluster-a:state:") for k in keys), sorted(keys)
    assert not any(k.startswith("rc:") for k in keys), sorted(keys)


async def test_a_node_relaying_to_another_upstream_than_its_namespace_is_warned(
    cluster: Cluster,
) -> None:
    await cluster.mock()
    first = await cluster.node("first")
    same = await cluster.node("same")
    await cluster.mock()
    other = await cluster.node("other")
    clash = await _clashes(other, 2)
    assert all("WARNING" in line for line in clash), other.lines
    assert any("node first of Redis namespace 'rc'" in line for line in clash), clash
    assert any("node same of Redis namespace 'rc'" in line for line in clash), clash
    for node in (first, same):
        assert not any("relays to another upstream" in line for line in node.lines), node.lines


async def test_a_node_that_stopped_is_no_clash(cluster: Cluster) -> None:
    # A node stopped cleanly left its record for a week: a cluster moved to another upstream
    # was warned of a clash with its own former node.
    await cluster.mock()
    gone = await cluster.node("gone")
    gone.proc.terminate()
    async with asyncio.timeout(WAIT):
        while gone.proc.returncode is None:
            await asyncio.sleep(0.05)
    await cluster.mock()
    moved = await cluster.node("moved")
    assert await _clashes(moved, 1, within=1.0) == [], moved.lines


async def test_nodes_started_before_their_redis_compare_upstreams_once_it_answers(
    cluster: Cluster,
) -> None:
    # Checked once at start: with Redis not up yet, no node recorded its upstream, and a clash
    # between them was never told.
    cluster.redis.stop()
    try:
        await cluster.mock()
        early = await cluster.node("early")
        await cluster.mock()
        late = await cluster.node("late")
        await asyncio.sleep(0.5)
    finally:
        cluster.redis.start()
    # The one that records second is told of the other.
    async with asyncio.timeout(WAIT):
        while not (await _clashes(late, 1, within=0) or await _clashes(early, 1, within=0)):
            await asyncio.sleep(0.1)
