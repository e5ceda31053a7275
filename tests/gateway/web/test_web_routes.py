"""The viewer's routes: static files and their headers, the channel listing and who may read it,
``--no-viewer``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
import pytest_asyncio
from web_helpers import WAIT, get_json, runcast

from gateway.cli import build_parser, settings_from_args
from gateway.http.state import RELAYS
from gateway.tools import ToolRegistry
from gateway.upstream import UpstreamSettings


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as client:
        yield client


async def start_run(session: aiohttp.ClientSession, url: str, key: str = "anything") -> str:
    """A streamed run through runcast's /v1, read to its end; returns the run id."""
    headers = {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}
    async with session.post(f"{url}/v1/assistants", json={"model": "gpt-4o"}, headers=headers) as r:
        assistant = (await r.json())["id"]
    body = {"assistant_id": assistant, "stream": True, "thread": {"messages": []}}
    async with session.post(f"{url}/v1/threads/runs", json=body, headers=headers) as r:
        assert r.status == 200
        await r.read()
        return r.headers["runcast-run-id"]


@pytest.mark.asyncio
async def test_client_module_is_served_as_javascript_with_revalidation(
    session: aiohttp.ClientSession,
) -> None:
    async with runcast() as rc:
        async with session.get(f"{rc.url}/client/runcast-client.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert r.headers["Cache-Control"] == "no-cache"
            etag = r.headers["ETag"]
            assert "export class RuncastStream" in await r.text()
        async with session.get(
            f"{rc.url}/client/runcast-client.js", headers={"If-None-Match": etag}
        ) as r:
            assert r.status == 304
            assert await r.read() == b""
        async with session.get(f"{rc.url}/") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert '<script type="module" src="/viewer/viewer.js">' in await r.text()


@pytest.mark.asyncio
async def test_no_viewer_serves_neither_page_nor_listing_but_still_the_client(
    session: aiohttp.ClientSession,
) -> None:
    async with runcast(viewer=False) as rc:
        for path in ("/", "/viewer/viewer.js", "/viewer/api/config", "/viewer/api/channels"):
            async with session.get(rc.url + path) as r:
                assert r.status == 404, path
        async with session.get(f"{rc.url}/client/runcast-client.js") as r:
            assert r.status == 200


def test_no_viewer_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parse = build_parser().parse_args
    assert settings_from_args(parse(["serve"]), {}).viewer is True
    assert settings_from_args(parse(["serve", "--no-viewer"]), {}).viewer is False
    with pytest.raises(SystemExit):
        parse(["serve", "--help"])
    assert "--no-viewer" in capsys.readouterr().out


@pytest.mark.asyncio
async def test_open_listing_shows_recent_runs_and_their_threads(
    session: aiohttp.ClientSession,
) -> None:
    async with runcast(sim={"deltas": 2}) as rc:
        status, config = await get_json(session, f"{rc.url}/viewer/api/config")
        assert status == 200
        assert config["listing"] == "open" and config["subscribe"] == "open"
        assert config["demo"] is True and "tool_call" in config["scenarios"]
        assert config["automation"] is False
        first = await start_run(session, rc.url)
        second = await start_run(session, rc.url)
        status, body = await get_json(session, f"{rc.url}/viewer/api/channels")
    assert status == 200
    assert [run["run_id"] for run in body["runs"]] == [second, first]
    assert all(run["token"] is None and run["last_seq"] > 0 for run in body["runs"])
    assert len(body["threads"]) == 2


@pytest.mark.asyncio
async def test_keyed_listing_needs_a_runcast_key_and_hands_out_tokens(
    session: aiohttp.ClientSession,
) -> None:
    # Keys make the listing private even where subscribing is open (embedded simulator).
    async with runcast(api_keys=("rk-1",), subscribe_auth="token") as rc:
        run_id = await start_run(session, rc.url, key="rk-1")
        status, config = await get_json(session, f"{rc.url}/viewer/api/config")
        assert (config["listing"], config["subscribe"]) == ("key", "token")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, body = await get_json(session, f"{rc.url}/viewer/api/channels", headers=headers)
            assert status == 401
            assert body["error"]["code"] == "invalid_api_key"
        status, body = await get_json(
            session, f"{rc.url}/viewer/api/channels", headers={"Authorization": "Bearer rk-1"}
        )
        assert status == 200
        [run] = body["runs"]
        assert run["run_id"] == run_id
        # The minted token opens that run's channel (and only with it).
        url = f"{rc.url}/streams/runs/{run_id}/snapshot"
        assert (await get_json(session, url))[0] == 401
        status, snapshot = await get_json(session, url, params={"token": run["token"]})
        assert status == 200 and snapshot["snapshot"]["run_id"] == run_id


@pytest.mark.asyncio
async def test_listing_tokens_live_no_longer_than_the_token_ttl(
    session: aiohttp.ClientSession,
) -> None:
    async with runcast(api_keys=("rk-1",), subscribe_auth="token", token_ttl=60.0) as rc:
        await start_run(session, rc.url, key="rk-1")
        status, body = await get_json(
            session, f"{rc.url}/viewer/api/channels", headers={"Authorization": "Bearer rk-1"}
        )
    assert status == 200
    for listed in body["runs"] + body["threads"]:
        claims = jwt.decode(listed["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] <= 60


@pytest.mark.asyncio
async def test_listing_is_off_without_keys_where_subscribers_need_tokens(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    # A real upstream (here: nothing listening): tokens are required and runcast has no keys.
    upstream = UpstreamSettings(base_url=f"http://127.0.0.1:{unused_tcp_port}/v1")
    async with runcast(upstream=upstream) as rc:
        status, config = await get_json(session, f"{rc.url}/viewer/api/config")
        assert config == {
            "listing": "off",
            "subscribe": "token",
            "demo": False,
            "scenarios": [],
            "automation": False,
        }
        status, body = await get_json(session, f"{rc.url}/viewer/api/channels")
    assert status == 403
    assert body["error"]["code"] == "no_api_keys"


@pytest.mark.asyncio
async def test_config_tells_the_page_when_runcast_answers_tool_calls(
    session: aiohttp.ClientSession,
) -> None:
    # The page submits outputs for its demo runs only when runcast does not (it would race).
    tools = ToolRegistry()
    tools.register(lambda city: {"city": city}, name="get_weather")
    async with runcast(tools=tools) as rc:
        status, config = await get_json(session, f"{rc.url}/viewer/api/config")
    assert status == 200 and config["automation"] is True


@pytest.mark.asyncio
async def test_client_unit_tests_under_node() -> None:
    """runcast-client.js under node's test runner: reducers on literal event sequences, resume
    without gap or duplicate, 204 and done, reconnect pacing, and the EventSource and WebSocket
    transports over stand-ins (tests/gateway/web/client/*.test.mjs)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "node",
            "--test",
            "tests/gateway/web/client/",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError:
        pytest.skip("node is not installed")
    try:
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()[-4000:]
    assert b"# fail 0" in out


@pytest.mark.asyncio
async def test_listing_shows_live_responses_and_chat_streams(
    session: aiohttp.ClientSession,
) -> None:
    # Slow deltas keep both streams live while the page lists; their creators read only the head.
    async with runcast(sim={"deltas": 40, "delay_ms": 50}) as rc:
        headers = {"Authorization": "Bearer anything"}
        requests = (
            ("/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}),
            (
                "/v1/chat/completions",
                {
                    "model": "gpt-4o",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            ),
        )
        ids = []
        async with contextlib.AsyncExitStack() as stack:
            for path, body in requests:
                r = await stack.enter_async_context(
                    session.post(f"{rc.url}{path}", json=body, headers=headers)
                )
                assert r.status == 200
                await r.content.readline()
                ids.append(
                    r.headers.get("runcast-response-id") or r.headers["runcast-completion-id"]
                )
            status, listing = await get_json(session, f"{rc.url}/viewer/api/channels")
            assert status == 200
            streams = {(s["kind"], s["id"]): s for s in listing["streams"]}
            assert set(streams) == {("response", ids[0]), ("chat", ids[1])}
            assert all(not s["ended"] and s["token"] is None for s in streams.values())
        # Once relayed to their end, the streams leave the listing.
        await rc.app[RELAYS].wait_idle()
        status, listing = await get_json(session, f"{rc.url}/viewer/api/channels")
    assert listing["streams"] == []


def test_the_browser_client_listens_to_every_event_runcast_adds() -> None:
    # An EventSource delivers only the event names it listens to: the client lacked
    # runcast.upstream_lost (and others), so a chat pane never saw its stream's end and
    # reconnected every few seconds.
    import importlib
    import pkgutil

    import gateway

    published = set()
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if module.name.endswith("__main__"):
            continue
        for name, value in vars(importlib.import_module(module.name)).items():
            if (
                name.isupper()
                and isinstance(value, str)
                and re.fullmatch(r"runcast\.[a-z_]+(\.[a-z_]+)?", value)
            ):
                published.add(value)
    static = Path(gateway.__file__).parent / "web" / "static"
    source = (static / "runcast-client.js").read_text()
    listed = source.split("export const RUNCAST_EVENTS = [", 1)[1].split("];", 1)[0]
    assert len(published) >= 17
    assert published <= set(re.findall(r'"(runcast\.[a-z_.]+)"', listed))
