"""The viewer and runcast-client.js in a real headless Chromium: a demo run started from the page,
a connection cut through a TCP proxy, a late joiner, and EventSource resume, dedupe and 204."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from openai import AsyncOpenAI
from web_helpers import WAIT, TcpProxy, runcast

from gateway.http.state import BROKER

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CLIENT_JS = Path(__file__).resolve().parents[3] / "gateway/web/static/runcast-client.js"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt chromium)"
    ),
]

PANE_TEXTS = """() => [...document.querySelectorAll('[data-testid=pane]')].map((p) =>
  [...p.querySelectorAll('.item.message[data-role=assistant] .text')].map((t) => t.textContent).join('\\n'))"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_page(browser: Any, problems: list[str], width: int = 1280) -> Any:
    page = await browser.new_page(viewport={"width": width, "height": 820})
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page


async def final_text(url: str, thread_id: str) -> str:
    """The assistant's answer as stored upstream, read through runcast's /v1 with the SDK."""
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as sdk:
        messages = await sdk.beta.threads.messages.list(thread_id, order="asc")
    return "\n".join(
        part.text.value
        for m in messages.data
        if m.role == "assistant"
        for part in m.content
        if part.type == "text"
    )


async def start_run(
    session: aiohttp.ClientSession, url: str
) -> tuple[str, str, asyncio.Task[bytes]]:
    """A streamed run started by a backend (not the page): run id, thread id, its reader task."""
    headers = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}
    async with session.post(f"{url}/v1/assistants", json={"model": "gpt-4o"}, headers=headers) as r:
        assistant = (await r.json())["id"]
    body = {
        "assistant_id": assistant,
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": "hi"}]},
    }
    response = await session.post(f"{url}/v1/threads/runs", json=body, headers=headers)
    assert response.status == 200
    return (
        response.headers["runcast-run-id"],
        response.headers["runcast-thread-id"],
        asyncio.create_task(response.read()),
    )


async def pane_state(page: Any) -> list[dict[str, str]]:
    return await page.eval_on_selector_all(
        "[data-testid=pane]",
        "ps => ps.map((p) => ({...p.dataset, ...Object.fromEntries("
        "Object.entries(p.querySelector('.conn').dataset).map(([k, v]) => ['conn_' + k, v]))}))",
    )


async def until_ended(page: Any) -> None:
    await page.wait_for_function(
        "() => { const ps = document.querySelectorAll('[data-testid=pane]');"
        " return ps.length === 2 && [...ps].every((p) => p.dataset.ended); }",
        timeout=WAIT * 1000,
    )


async def test_demo_runs_from_the_page_stream_to_the_final_message(browser: Any) -> None:
    async with runcast(sim={"deltas": 24, "delay_ms": 15}) as rc:
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"{rc.url}/")
        await page.get_by_role("button", name="text", exact=True).click()
        await page.wait_for_function(
            "() => document.querySelector('.item.message .text')?.textContent.length > 0",
            timeout=WAIT * 1000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "viewer.png")
        await until_ended(page)
        run_id = page.url.split("#run=")[1]
        panes = await pane_state(page)
        texts = await page.evaluate(PANE_TEXTS)

        # A tool-call scenario: the page answers the call; arguments, output and timings show.
        await page.get_by_role("button", name="tool call", exact=True).click()
        await page.wait_for_function(
            f"() => location.hash.startsWith('#run=') && location.hash !== '#run={run_id}'"
        )
        await until_ended(page)
        call = await page.eval_on_selector(
            "[data-testid=pane] .call",
            "c => [c.querySelector('.name').textContent, c.querySelector('.args').textContent,"
            " c.querySelector('.output').textContent, c.querySelector('.timing').textContent]",
        )
        tool_texts = await page.evaluate(PANE_TEXTS)
        tool_run = page.url.split("#run=")[1]
        listed = await page.eval_on_selector_all("#runs a", "as => as.map((a) => a.textContent)")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{rc.url}/streams/runs/{run_id}/snapshot") as r:
                thread_id = (await r.json())["snapshot"]["thread_id"]
            async with session.get(f"{rc.url}/streams/runs/{tool_run}/snapshot") as r:
                tool_thread = (await r.json())["snapshot"]["thread_id"]
        expected = await final_text(rc.url, thread_id)
        tool_expected = await final_text(rc.url, tool_thread)
        await page.close()

    assert problems == []
    assert [(p["ended"], p["transport"], p["conn_state"]) for p in panes] == [
        ("done", "sse", "ended"),
        ("done", "websocket", "ended"),
    ]
    assert expected and texts == [expected, expected]
    name, args, output, timing = call
    assert name == "get_weather()" and args.startswith("{") and '"temp_c":19' in output
    assert "arguments in" in timing and "output after" in timing and "completed" in timing
    assert tool_texts == [tool_expected, tool_expected]
    assert tool_expected.startswith(f"get_weather returned: {output}")
    assert any(run_id in text for text in listed) and any(tool_run in text for text in listed)


async def test_a_cut_through_a_proxy_shows_and_the_text_still_ends_whole(browser: Any) -> None:
    async with (
        runcast(sim={"deltas": 80, "delay_ms": 25}) as rc,
        TcpProxy("127.0.0.1", int(rc.url.rsplit(":", 1)[1])) as proxy,
        aiohttp.ClientSession() as session,
    ):
        run_id, thread_id, creator = await start_run(session, rc.url)
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"http://127.0.0.1:{proxy.port}/#run={run_id}")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.item.message .text')].filter("
            "(t) => t.textContent.length > 40).length === 2",
            timeout=WAIT * 1000,
        )
        assert proxy.sever() >= 2
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.conn')].every((c) => c.dataset.cuts === '1')",
            timeout=WAIT * 1000,
        )
        await until_ended(page)
        panes = await pane_state(page)
        texts = await page.evaluate(PANE_TEXTS)
        await page.close()
        async with asyncio.timeout(WAIT):
            await creator
        expected = await final_text(rc.url, thread_id)

    assert [(p["ended"], p["conn_cuts"], p["conn_resumes"]) for p in panes] == [
        ("done", "1", "1"),
        ("done", "1", "1"),
    ]
    assert texts == [expected, expected]
    # The page's own requests were cut too; it retries without an uncaught error.
    assert [p for p in problems if "ERR_" not in p and "Failed to load" not in p] == []


async def test_a_late_joiner_gets_the_snapshot_then_live_text(browser: Any) -> None:
    async with (
        # 4.5 s of deltas: the page must join while they last, also on a loaded machine (with
        # 1.8 s, a page that took over 1.2 s to load saw only the end).
        runcast(sim={"deltas": 150, "delay_ms": 30}) as rc,
        aiohttp.ClientSession() as session,
    ):
        run_id, thread_id, creator = await start_run(session, rc.url)
        async with asyncio.timeout(WAIT):
            while (rc.app[BROKER].channel_statistics(f"run:{run_id}").last_seq or 0) < 20:
                await asyncio.sleep(0.02)
        problems: list[str] = []
        page = await new_page(browser, problems, width=375)
        await page.goto(f"{rc.url}/#run={run_id}")
        await page.wait_for_selector("[data-testid=pane][data-snapshot-seq]", timeout=WAIT * 1000)
        await page.wait_for_function(
            "() => document.querySelector('.item.message .text')?.textContent.length > 0"
        )
        first = (await page.evaluate(PANE_TEXTS))[0]
        snapshot_seq = int(await page.get_attribute("[data-testid=pane]", "data-snapshot-seq"))
        await until_ended(page)
        texts = await page.evaluate(PANE_TEXTS)
        overflow = await page.evaluate("document.documentElement.scrollWidth")
        await page.screenshot(path=ARTIFACTS / "viewer-375.png", full_page=True)
        await page.close()
        async with asyncio.timeout(WAIT):
            await creator
        expected = await final_text(rc.url, thread_id)

    assert problems == []
    assert snapshot_seq >= 20
    assert first and expected.startswith(first) and len(first) < len(expected)
    assert texts == [expected, expected]
    assert overflow <= 375  # readable on a phone: no sideways scrolling


TEST_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { RuncastStream } from "/client/runcast-client.js";
const stream = new RuncastStream({ kind: "run", id: "run_1", transport: "sse", retryDelays: [50] });
window.seen = [];
window.errors = [];
stream.addEventListener("event", (e) => window.seen.push(e.detail.seq));
stream.addEventListener("error", (e) => window.errors.push(e.detail));
stream.addEventListener("end", (e) => {
  window.result = { reason: e.detail.reason, text: stream.state.items[0]?.text, ...stream.connection };
});
</script>"""


def _delta(seq: int, value: str) -> bytes:
    part = {"index": 0, "type": "text", "text": {"value": value}}
    data = json.dumps({"id": "msg_1", "delta": {"content": [part]}})
    return f"id: ep7-{seq}\nevent: thread.message.delta\ndata: {data}\n\n".encode()


async def _follow(
    browser: Any, stream: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> tuple[dict[str, Any], list[int], list[dict[str, Any]]]:
    """TEST_PAGE in Chromium following run_1, whose stream ``stream`` serves: the end's
    detail, the seqs seen and the errors reported."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=TEST_PAGE, content_type="text/html")

    async def client(request: web.Request) -> web.Response:
        return web.Response(body=CLIENT_JS.read_bytes(), content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/client/runcast-client.js", client)
    app.router.add_get("/streams/runs/run_1", stream)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        problems: list[str] = []
        tab = await new_page(browser, problems)
        await tab.goto(f"http://127.0.0.1:{port}/")
        await tab.wait_for_function("() => window.result", timeout=WAIT * 1000)
        result = await tab.evaluate("window.result")
        seen = await tab.evaluate("window.seen")
        errors = await tab.evaluate("window.errors")
        await tab.close()
    finally:
        await runner.cleanup()
    return result, seen, errors


async def test_eventsource_resumes_without_duplicates_and_ends_on_204(browser: Any) -> None:
    """runcast-client.js with Chromium's EventSource against a scripted server."""
    requests: list[str] = []
    snapshot = (
        '{"epoch":"ep7","seq":2,"snapshot":{"run_id":"run_1","status":"in_progress","steps":[],"messages":'
        '[{"id":"msg_1","role":"assistant","status":"in_progress",'
        '"content":[{"type":"text","text":{"value":"Hel"}}]}]}}'
    )

    async def stream(request: web.Request) -> web.StreamResponse:
        requests.append(request.query_string)
        if len(requests) >= 3:
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(requests) == 1:
            await response.write(
                f"id: ep7-2\nevent: runcast.snapshot\ndata: {snapshot}\n\n".encode()
            )
            await response.write(_delta(3, "lo"))
            await asyncio.sleep(0.1)
            assert request.transport is not None
            request.transport.abort()  # a cut
            return response
        await response.write(_delta(3, "lo") + _delta(4, ", ") + _delta(5, "world"))
        await response.write_eof()  # the body ends before done
        return response

    result, seen, errors = await _follow(browser, stream)

    assert requests[:2] == ["snapshot=1", "since=ep7-3"]
    assert requests[2:] and all(q == "since=ep7-5" for q in requests[2:])  # the 204 (and its probe)
    assert seen == [3, 4, 5]
    assert (result["reason"], result["text"], result["via"]) == (
        "no-content",
        "Hello, world",
        "eventsource",
    )
    assert (result["cuts"], result["resumes"], result["duplicates"]) == (2, 1, 1)
    assert all(not e["fatal"] for e in errors)


async def test_a_responses_demo_from_the_page_streams_to_the_final_output(browser: Any) -> None:
    async with runcast(sim={"deltas": 24, "delay_ms": 15}) as rc:
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"{rc.url}/")
        await page.get_by_role("button", name="Responses: text", exact=True).click()
        await page.wait_for_function(
            "() => location.hash.startsWith('#response=')", timeout=WAIT * 1000
        )
        listed = await page.wait_for_function(
            "() => [...document.querySelectorAll('#streams a')].map((a) => a.textContent).join()",
            timeout=WAIT * 1000,
        )
        listed_text = await listed.json_value()
        await until_ended(page)
        response_id = page.url.split("#response=")[1]
        panes = await pane_state(page)
        texts = await page.evaluate(PANE_TEXTS)

        # A tool-call scenario: the function calls show with their names and arguments.
        await page.get_by_role("button", name="Responses: tool call", exact=True).click()
        await page.wait_for_function(
            f"() => location.hash.startsWith('#response=') && location.hash !== '#response={response_id}'"
        )
        await until_ended(page)
        tool_response = page.url.split("#response=")[1]
        shown = await page.eval_on_selector_all(
            "[data-testid=pane]",
            "ps => ps.map((p) => [...p.querySelectorAll('.call')].map((c) =>"
            " [c.querySelector('.name').textContent, c.querySelector('.args').textContent]))",
        )
        async with AsyncOpenAI(base_url=f"{rc.url}/v1", api_key="sk-test", max_retries=0) as sdk:
            expected = (await sdk.responses.retrieve(response_id)).output_text
            calls = [
                [f"{item.name}()", item.arguments]
                for item in (await sdk.responses.retrieve(tool_response)).output
                if item.type == "function_call"
            ]
        await page.close()

    assert problems == []
    assert response_id in listed_text
    assert [(p["ended"], p["transport"]) for p in panes] == [("done", "sse"), ("done", "websocket")]
    assert expected and texts == [expected, expected]
    assert calls and shown == [calls, calls]


async def test_a_chat_demo_from_the_page_streams_to_the_final_message(browser: Any) -> None:
    async with runcast(sim={"deltas": 24, "delay_ms": 15}) as rc:
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"{rc.url}/")
        await page.get_by_role("button", name="Chat: text", exact=True).click()
        await page.wait_for_function(
            "() => location.hash.startsWith('#chat=')", timeout=WAIT * 1000
        )
        await until_ended(page)
        completion_id = page.url.split("#chat=")[1]
        panes = await pane_state(page)
        texts = await page.evaluate(PANE_TEXTS)
        url = f"{rc.url}/streams/chat/{completion_id}/snapshot"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            completion = (await r.json())["snapshot"]["completion"]

        # A tool call: chat calls live on the assistant message (no item of their own), and
        # the viewer drew calls for "tool_calls" items only (an empty message box).
        await page.get_by_role("button", name="Chat: tool call", exact=True).click()
        await page.wait_for_function(
            f"() => location.hash.startsWith('#chat=') && location.hash !== '#chat={completion_id}'"
        )
        await until_ended(page)
        calls = await page.evaluate(
            "() => [...document.querySelectorAll('.call .name')].map((e) => e.textContent)"
        )
        await page.close()

    assert problems == []
    assert [(p["ended"], p["transport"]) for p in panes] == [("done", "sse"), ("done", "websocket")]
    expected = completion["choices"][0]["message"]["content"]
    assert completion["id"] == completion_id and expected
    assert texts == [expected, expected]
    assert calls and all(name == "get_weather()" for name in calls)


async def test_an_upstream_error_event_is_an_event_not_a_cut_over_eventsource(
    browser: Any,
) -> None:
    # EventSource calls onerror for a server-sent `event: error` too: the client took it for a
    # broken connection, closed before applying it, and resumed from the event before it every
    # few seconds for as long as the page stayed open, never seeing the run's end.
    requests: list[str] = []
    failed = '{"code":"server_error","message":"The model crashed."}'

    async def stream(request: web.Request) -> web.StreamResponse:
        requests.append(request.query_string)
        if len(requests) > 1:
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_delta(1, "Hi"))
        await response.write(f"id: ep7-2\nevent: error\ndata: {failed}\n\n".encode())
        await response.write(b"id: ep7-3\nevent: done\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    result, seen, _ = await _follow(browser, stream)
    assert seen == [1, 2, 3]
    assert result["reason"] == "done" and result["cuts"] == 0
    assert requests == ["snapshot=1"]


FOLLOW = """async (streams) => {
  const { RuncastStream } = await import("/client/runcast-client.js");
  window.streams = {};
  for (const [name, options] of Object.entries(streams)) {
    const stream = new RuncastStream({ retryDelays: [50], ...options });
    const log = { ended: null, errors: [] };
    stream.addEventListener("end", (e) => { log.ended = e.detail.reason; });
    stream.addEventListener("error", (e) => log.errors.push(e.detail.message));
    window.streams[name] = { stream, log };
  }
}"""
"""Follows each of ``streams`` ({name: RuncastStream options}) from a page of runcast's origin."""

STREAMS = """() => Object.fromEntries(Object.entries(window.streams).map(([name, { stream, log }]) =>
  [name, { ...log, ...stream.connection, status: stream.state.status, finished: stream.state.finished,
    error: stream.state.error, items: stream.state.items.map((i) => [i.runId, i.text]) }]))"""


async def run_on_thread(session: aiohttp.ClientSession, url: str, thread_id: str) -> str:
    """A streamed run on an existing thread, read to its end: its run id."""
    headers = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}
    async with session.post(f"{url}/v1/assistants", json={"model": "gpt-4o"}, headers=headers) as r:
        assistant = (await r.json())["id"]
    body = {"assistant_id": assistant, "stream": True}
    async with session.post(
        f"{url}/v1/threads/{thread_id}/runs", json=body, headers=headers
    ) as response:
        await response.read()
        return response.headers["runcast-run-id"]


async def test_a_thread_cut_after_its_run_finished_resumes_into_the_next_run(
    browser: Any,
) -> None:
    # Thread channels never end by themselves: a cut once a run had finished ended the stream
    # for good, and the thread's next run was never seen.
    async with (
        runcast(sim={"deltas": 10, "delay_ms": 5}) as rc,
        TcpProxy("127.0.0.1", int(rc.url.rsplit(":", 1)[1])) as proxy,
        aiohttp.ClientSession() as session,
    ):
        first, thread_id, creator = await start_run(session, rc.url)
        async with asyncio.timeout(WAIT):
            await creator
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"http://127.0.0.1:{proxy.port}/healthz")
        kinds = {
            t: {"kind": "thread", "id": thread_id, "transport": t} for t in ("sse", "websocket")
        }
        await page.evaluate(FOLLOW, kinds)
        finished = (
            "() => Object.values(window.streams).every(({ stream }) => stream.state.finished)"
        )
        await page.wait_for_function(finished, timeout=WAIT * 1000)
        assert proxy.sever() >= 2
        await page.wait_for_function(
            "() => Object.values(window.streams).every(({ stream: s }) =>"
            " s.connection.resumes === 1 && s.connection.state === 'open')",
            timeout=WAIT * 1000,
        )
        second = await run_on_thread(session, rc.url, thread_id)
        await page.wait_for_function(
            f"() => Object.values(window.streams).every(({{ stream: s }}) =>"
            f" s.state.runId === '{second}' && s.state.finished)",
            timeout=WAIT * 1000,
        )
        streams = await page.evaluate(STREAMS)
        async with session.get(f"{rc.url}/streams/runs/{second}/snapshot") as r:
            message = (await r.json())["snapshot"]["messages"][0]
        await page.close()

    expected = message["content"][0]["text"]["value"]
    for state in streams.values():
        assert (state["ended"], state["cuts"], state["status"]) == (None, 1, "completed")
        assert state["items"][0][0] == first and state["items"][-1] == [second, expected]
    # The cut shows as ERR_ lines; /healthz has no favicon.
    assert [p for p in problems if "ERR_" not in p and "Failed to load" not in p] == []


async def test_ended_streams_end_over_websocket_as_over_eventsource(browser: Any) -> None:
    # A WebSocket closed with 1000 (the channel ended) was reconnected to for ever: a run followed
    # at its last id, and a chat stream cut upstream (runcast.upstream_lost, not folded in).
    async with (
        runcast(sim={"deltas": 10, "delay_ms": 5}) as rc,
        aiohttp.ClientSession() as session,
    ):
        run_id, _, creator = await start_run(session, rc.url)
        async with asyncio.timeout(WAIT):
            body = (await creator).decode()
        last = [line[4:] for line in body.splitlines() if line.startswith("id: ")][-1]
        chat = {
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"mock_scenario": "drop"},
        }
        headers = {"Authorization": "Bearer sk-test"}
        async with session.post(f"{rc.url}/v1/chat/completions", json=chat, headers=headers) as r:
            assert "runcast.upstream_lost" in (await r.read()).decode()
            completion_id = r.headers["runcast-completion-id"]
        problems: list[str] = []
        page = await new_page(browser, problems)
        await page.goto(f"{rc.url}/healthz")
        streams: dict[str, dict[str, Any]] = {}
        for t in ("sse", "websocket"):
            streams[f"run-{t}"] = {"kind": "run", "id": run_id, "transport": t, "since": last}
            streams[f"chat-{t}"] = {"kind": "chat", "id": completion_id, "transport": t, "since": 0}
        await page.evaluate(FOLLOW, streams)
        await page.wait_for_function(
            "() => Object.values(window.streams).every(({ log }) => log.ended)",
            timeout=WAIT * 1000,
        )
        ended = await page.evaluate(STREAMS)
        await page.close()

    for t in ("sse", "websocket"):
        run, chat_ = ended[f"run-{t}"], ended[f"chat-{t}"]
        assert (run["ended"], run["errors"]) == ("no-content", [])
        assert (chat_["ended"], chat_["errors"], chat_["error"]["code"]) == (
            "done",
            [],
            "upstream_lost",
        )
    assert [p for p in problems if "Failed to load" not in p] == []  # /healthz has no favicon
