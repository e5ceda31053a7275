"""Two real ``runcast serve`` processes sharing one ``redis-server`` and one ``runcast mock``.

A run created through node A is followed on node B: B's SSE subscribers see the creator's exact
sequence (same ids, names and data bytes), and a resume on B with ``Last-Event-ID`` gets exactly
what came after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis_server import RedisServer

from parsers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.asyncio

WAIT = 30.0
SECRET = "s" * 40
HEADERS = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNCAST_", "OPENAI_"))}


@contextlib.asynccontextmanager
async def _process(*argv: str, pattern: str, stream: str) -> AsyncIterator[str]:
    """Start ``python -m gateway *argv``; yield the URL its ``listening on`` line names."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *argv,
        stdout=asyncio.subprocess.PIPE if stream == "stdout" else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stream == "stderr" else asyncio.subprocess.DEVNULL,
        env=_environ(),
    )
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    lines: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(WAIT):
            while True:
                line = (await pipe.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
                if found := re.search(pattern, line):
                    break

        async def keep_reading() -> None:
            while await pipe.readline():
                pass

        drain = asyncio.create_task(keep_reading())
        yield found.group(1)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            drain.cancel()
            await asyncio.wait([drain])


async def _read_sse(response: aiohttp.ClientResponse) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    async with asyncio.timeout(WAIT):
        async for chunk in response.content.iter_any():
            events.extend(decoder.feed(chunk))
    return events


async def test_a_run_created_on_a_is_followed_and_resumed_on_b(redis_server: RedisServer) -> None:
    redis_server.flush()
    async with contextlib.AsyncExitStack() as stack:
        mock = await stack.enter_async_context(
            _process(
                "mock",
                "--port",
                "0",
                "--deltas",
                "40",
                "--delay-ms",
                "10",
                pattern=r"listening on (http://\S+)",
                stream="stdout",
            )
        )
        upstream = mock.rstrip("/") + ("" if mock.rstrip("/").endswith("/v1") else "/v1")
        nodes = []
        for node in ("a", "b"):
            url = await stack.enter_async_context(
                _process(
                    "serve",
                    "--port",
                    "0",
                    "--upstream",
                    upstream,
                    "--broker",
                    redis_server.url,
                    "--node-id",
                    node,
                    "--token-secret",
                    SECRET,
                    pattern=r"listening on (http://\S+)",
                    stream="stderr",
                )
            )
            nodes.append(url)
        a, b = nodes
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
        )
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
        assert creator.status == 200
        run_id = creator.headers["runcast-run-id"]
        auth = {"Authorization": f"Bearer {creator.headers['runcast-subscribe-token']}"}
        # Subscribers on B while the run streams on A: from the start, and live.
        subscribers = [
            await session.get(f"{b}/streams/runs/{run_id}?since=0", headers=auth) for _ in range(2)
        ]
        assert [s.status for s in subscribers] == [200, 200]
        created = await _read_sse(creator)
        seen = [await _read_sse(s) for s in subscribers]

        expected = [(e.id, e.event, e.data) for e in created]
        assert expected[-1][1] == "done" and len(expected) > 40
        ids = [e.id for e in created if e.id]
        assert len({i.rpartition("-")[0] for i in ids}) == 1  # one epoch
        assert [int(i.rpartition("-")[2]) for i in ids] == list(range(1, len(ids) + 1))
        for events in seen:
            assert [(e.id, e.event, e.data) for e in events] == expected

        # Resume on B from the 10th event: exactly what followed (then the end: 200, not 204).
        resume_at = created[9].id
        async with session.get(
            f"{b}/streams/runs/{run_id}", headers={**auth, "Last-Event-ID": resume_at}
        ) as resumed:
            assert resumed.status == 200
            rest = await _read_sse(resumed)
        assert [(e.id, e.event, e.data) for e in rest] == expected[10:]
