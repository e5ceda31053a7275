"""The memory budget holds a real ``runcast serve`` process: runs far larger than the budget stream
through it, and its RSS stays under the budget plus a fixed overhead.

The process is a real subprocess (RSS is per process) with its embedded simulator; the creators
read the streams as raw bytes so the test process, not the gateway, stays cheap.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import orjson
import psutil
import pytest
from http_helpers import WAIT, StartGateway, clean_environ, parse_serve, serve_process
from prometheus_client.parser import text_string_to_metric_families
from protocol_helpers import read_sse

from gateway.cli import build_parser

MiB = 1024 * 1024
BUDGET = 8 * MiB
RUNS = 16
DELTAS = 8_000
"""About 1.7 MB of stream per run: 27 MiB through the gateway, over 3 times the budget, each run
within the per-channel history limit (2 MiB), so nothing but the budget bounds what is retained."""
OVERHEAD = 24 * MiB
"""RSS allowed above the idle process plus the budget: the simulator's own store of the answers
(about 3 MB here), buffers in flight, allocator slack. Measured: 15 MiB above idle with the budget,
51 MiB without (``--memory-budget 4096MiB``)."""
HEADERS = {"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("64MiB", 64 * MiB), ("64M", 64 * MiB), ("1.5GiB", 1536 * MiB), ("300MB", 300_000_000)],
)
def test_memory_budget_flag_takes_sizes(value: str, expected: int) -> None:
    assert parse_serve("--memory-budget", value).hub.memory_budget == expected
    assert parse_serve().hub.memory_budget == 256 * MiB


@pytest.mark.parametrize("value", ["0", "-1MiB", "12x", "MiB", ""])
def test_a_bad_memory_budget_names_the_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_serve(f"--memory-budget={value}")
    assert exited.value.code == 2
    assert "--memory-budget" in capsys.readouterr().err


def test_help_shows_the_default_memory_budget(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    assert "(default 256MiB)" in " ".join(capsys.readouterr().out.split())


async def _run(session: aiohttp.ClientSession, v1: str, assistant_id: str) -> int:
    """One streamed run on a new thread, read to its end; the bytes received."""
    async with session.post(f"{v1}/threads", json={}, headers=HEADERS) as response:
        thread_id = (await response.json())["id"]
    body = {"assistant_id": assistant_id, "stream": True}
    async with session.post(
        f"{v1}/threads/{thread_id}/runs", json=body, headers=HEADERS
    ) as response:
        assert response.status == 200
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
        return received


@pytest.mark.asyncio
async def test_rss_stays_under_the_budget_while_runs_far_larger_stream() -> None:
    command = (sys.executable, "-m", "gateway", "serve", "--port", "0")
    options = ("--memory-budget", f"{BUDGET // MiB}MiB", "--sim-deltas", str(DELTAS))
    async with serve_process(*command, *options, env=clean_environ()) as (proc, url, _):
        process = psutil.Process(proc.pid)
        v1 = f"{url}/v1"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WAIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(
                f"{v1}/assistants", json={"model": "gpt-4o"}, headers=HEADERS
            ) as response:
                assistant_id = (await response.json())["id"]
            idle = process.memory_info().rss
            peak = idle
            streamed = 0
            async with asyncio.timeout(60):
                for _ in range(RUNS // 4):
                    sizes = await asyncio.gather(
                        *(_run(session, v1, assistant_id) for _ in range(4))
                    )
                    streamed += sum(sizes)
                    peak = max(peak, process.memory_info().rss)
            async with session.get(f"{url}/healthz") as response:
                assert response.status == 200
        assert streamed > 2 * BUDGET
        assert peak - idle < BUDGET + OVERHEAD, (
            f"RSS grew {(peak - idle) / MiB:.0f} MiB for a {BUDGET / MiB:.0f} MiB budget "
            f"({streamed / MiB:.0f} MiB streamed)"
        )


async def _budget_used(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "runcast_memory_budget_used_bytes":
            return family.samples[0].value
    raise AssertionError("no runcast_memory_budget_used_bytes")


@pytest.mark.parametrize("protocol", ["chat", "responses"])
@pytest.mark.asyncio
async def test_finished_named_streams_are_charged_what_their_snapshots_hold(
    start_gateway: StartGateway, session: aiohttp.ClientSession, protocol: str
) -> None:
    # Each named channel of a finished 200-delta chat stream was charged the 62 KB of chunks it
    # folded, not the 4 KB snapshot it holds: 150 of them kept a 2 MiB budget over its limit
    # for the channels' 15 minutes, and every new stream's history was evicted as it was
    # published (a resume from its start got runcast.history_lost).
    budget = 512 * 1024
    gateway = await start_gateway(sim={"deltas": 200}, hub={"memory_budget": budget})
    path, body, last = {
        "chat": (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            lambda e: e.data == b"[DONE]",
        ),
        "responses": (
            "/v1/responses",
            {"model": "gpt-4o", "input": "Hi", "stream": True},
            lambda e: e.event == "response.completed",
        ),
    }[protocol]

    async def stream(name: str) -> int:
        async with session.post(
            gateway.url + path,
            json=body,
            headers={"Authorization": "Bearer sk-any", "Runcast-Channel": name},
        ) as response:
            assert response.status == 200
            return len(await response.read())

    async with asyncio.timeout(WAIT):
        for i in range(8):
            await asyncio.gather(*(stream(f"s{i}-{j}") for j in range(5)))
        fresh = await stream("fresh")
        async with session.get(f"{gateway.url}/streams/channels/fresh?since=0") as response:
            replayed = await read_sse(
                response, until=lambda e: last(e) or e.event == "runcast.history_lost"
            )
    assert await _budget_used(session, gateway.url) <= budget
    names = [event.event for event in replayed.events]
    assert "runcast.history_lost" not in names
    assert len(replayed.events) > 200 and fresh > 200
    async with session.get(f"{gateway.url}/streams/channels/s0-0/snapshot") as response:
        snapshot = (await response.json())["snapshot"]
    assert snapshot["done"] is True
    assert len(orjson.dumps(snapshot)) > 1000
