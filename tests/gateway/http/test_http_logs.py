"""A real ``runcast serve`` process's log output: JSON lines with the ids in context, no secret
in any line, probes never in the access log while WebSocket sessions and subscribers that left
mid-stream are in it, ``--access-log off``."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import aiohttp
import orjson
import pytest
from http_helpers import WAIT, StartSim, clean_environ, serve_process, stop_with_sigterm
from openai import AsyncOpenAI

from gateway.http.access import AccessLogger

API_KEY = "rk-runcast-key-0123456789abcdef"
TOKEN_SECRET = "token-secret-0123456789abcdef-0123456789"
UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-0123456789"
WRONG_KEY = "rk-wrong-key-0123456789abcdef"


async def _serve(sim_url: str, *flags: str) -> Any:
    env = {
        **clean_environ(),
        "RUNCAST_API_KEYS": API_KEY,
        "RUNCAST_TOKEN_SECRET": TOKEN_SECRET,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "RUNCAST_TOOL_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    command = (sys.executable, "-m", "gateway", "serve", "--port", "0", "--upstream", sim_url)
    return serve_process(*command, *flags, env=env)


async def _exercise(url: str) -> tuple[str, str]:
    """A streamed run, a token minted and used in a query, refused keys; (run id, token)."""
    sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)
    asst = await sdk.beta.assistants.create(model="gpt-4o", name="logs")
    thread = await sdk.beta.threads.create()
    await sdk.beta.threads.messages.create(thread.id, role="user", content="hello")
    async with sdk.beta.threads.runs.stream(thread_id=thread.id, assistant_id=asst.id) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    await sdk.close()
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/tokens", json={"run_id": run.id}, headers=bearer) as r:
            token = (await r.json())["token"]
        async with session.get(f"{url}/streams/runs/{run.id}?since=0&token={token}") as r:
            assert r.status == 200
            await r.read()
        async with session.get(
            f"{url}/v1/threads/{thread.id}", headers={"Authorization": f"Bearer {WRONG_KEY}"}
        ) as r:
            assert r.status == 401
        async with session.get(f"{url}/streams/runs/{run.id}?token={WRONG_KEY}") as r:
            assert r.status in (401, 403)
        # A WebSocket session, ended by the server at the channel's end.
        ws = await session.ws_connect(f"{url}/streams/runs/{run.id}?since=0&token={token}")
        assert [m async for m in ws] and ws.close_code == 1000
        # A subscriber that leaves an open channel mid-stream (its handler is cancelled).
        async with session.post(
            f"{url}/tokens", json={"thread_id": thread.id}, headers=bearer
        ) as r:
            thread_token = (await r.json())["token"]
        # From since=0, so its first bytes come at once (not with the first heartbeat).
        thread_stream = f"{url}/streams/threads/{thread.id}?since=0&token={thread_token}"
        async with session.get(thread_stream) as r:
            assert r.status == 200
            await r.content.readany()
        await asyncio.sleep(0.2)  # the gateway sees the connection close
        for probe in ("/healthz", "/healthz?token=x"):
            async with session.get(url + probe) as r:
                assert r.status == 200
    return run.id, token


async def _rest(proc: asyncio.subprocess.Process, lines: list[str]) -> list[str]:
    assert await stop_with_sigterm(proc) == 0
    assert proc.stderr is not None
    rest = (await proc.stderr.read()).decode().splitlines(keepends=True)
    return [line.rstrip("\n") for line in [*lines, *rest]]


@pytest.mark.asyncio
async def test_json_lines_carry_ids_and_never_a_secret(start_sim: StartSim) -> None:
    sim_url = await start_sim()
    serving = await _serve(sim_url, "--log-format", "json", "--log-level", "debug")
    async with serving as (proc, url, lines):
        run_id, token = await _exercise(url)
        every = await _rest(proc, lines)

    records = [orjson.loads(line) for line in every]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert record["time"].endswith("Z")
    for secret in (API_KEY, TOKEN_SECRET, UPSTREAM_KEY, WEBHOOK_SECRET, WRONG_KEY, token):
        assert not [line for line in every if secret in line], secret
    access = [r["message"] for r in records if r["logger"] == "aiohttp.access"]
    assert any(f"/streams/runs/{run_id}?since=0&token=***" in m for m in access), access
    assert any('"POST /v1/threads/' in m for m in access)
    ws_line = f'"GET /streams/runs/{run_id}?since=0&token=***" 101'
    assert any(ws_line in m for m in access), access
    assert any('"GET /streams/threads/thread_' in m and '" 200 ' in m for m in access), access
    assert not [m for m in access if "/healthz" in m]
    relayed = [r for r in records if r["logger"] == "runcast.relay"]
    assert relayed and all(r.get("run_id") == run_id for r in relayed), relayed
    assert all(r["thread_id"].startswith("thread_") for r in relayed)
    streamed = [r for r in records if f"/streams/runs/{run_id}?" in r["message"]]
    assert streamed and all(r.get("run_id") == run_id for r in streamed)


@pytest.mark.asyncio
async def test_access_log_off_and_text_lines(start_sim: StartSim) -> None:
    sim_url = await start_sim()
    serving = await _serve(sim_url, "--access-log", "off")
    async with serving as (proc, url, lines):
        _, token = await _exercise(url)
        every = await _rest(proc, lines)
    assert every and not [line for line in every if "aiohttp.access" in line]
    assert all(" INFO " in line or " WARNING " in line for line in every), every
    for secret in (API_KEY, TOKEN_SECRET, UPSTREAM_KEY, WEBHOOK_SECRET, WRONG_KEY, token):
        assert not [line for line in every if secret in line], secret


def test_no_access_line_is_built_when_info_lines_are_dropped() -> None:
    # aiohttp asks `enabled` once per connection: below INFO it skips building the line.
    logger = logging.getLogger("runcast.tests.access")
    logger.setLevel(logging.WARNING)
    assert AccessLogger(logger, "").enabled is False
    logger.setLevel(logging.INFO)
    assert AccessLogger(logger, "").enabled is True
