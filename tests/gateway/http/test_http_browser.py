"""A real browser: Chromium's EventSource follows a run and resumes by itself after a drop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest
from http_helpers import WAIT, StartGateway, Subscriber, new_thread, read_sse, sdk_client

from parsers.assistants.events import KNOWN_EVENTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt chromium)"
    ),
]

# EventSource delivers named events only to listeners registered for that name.
LISTEN = """
([url, names]) => {
  window.got = [];
  window.opens = 0;
  const source = new EventSource(url);
  source.onopen = () => { window.opens += 1; };
  for (const name of names) {
    source.addEventListener(name, (e) => {
      // The connection's own `error` event is a plain Event, the upstream's a MessageEvent.
      if (!(e instanceof MessageEvent)) return;
      window.got.push([e.lastEventId, e.type, e.data]);
      if (e.type === "done") source.close();
    });
  }
}
"""


async def wait_for(page: Any, expression: str) -> Any:
    async with asyncio.timeout(WAIT):
        while not (value := await page.evaluate(expression)):
            await asyncio.sleep(0.02)
    return value


@pytest.mark.asyncio
async def test_eventsource_receives_run_and_resumes_after_drop(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    from playwright.async_api import async_playwright

    # ~60 deltas 60 ms apart: the run is still going when the connection is dropped, and when
    # Chromium reconnects (it waits about 3 s by default).
    gateway = await start_gateway(sim={"deltas": 90, "delay_ms": 60})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    names = sorted(KNOWN_EVENTS | {"runcast.history_lost", "runcast.snapshot"})

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{gateway.url}/healthz")  # same origin as the stream
            # The run starts once the page is ready: a browser slow to start on a busy machine
            # must not find it over already (then there is no connection left to drop).
            creator = await session.post(
                f"{gateway.v1}/threads/{thread_id}/runs",
                json={"assistant_id": assistant_id, "stream": True},
                headers={"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"},
            )
            run_id = creator.headers["runcast-run-id"]
            creator_task = asyncio.create_task(read_sse(creator, Subscriber()))
            await page.evaluate(LISTEN, [f"/streams/runs/{run_id}?since=0", names])
            await wait_for(page, "window.got.length >= 12")
            assert gateway.connections.drop(f"run:{run_id}") == 1
            await wait_for(page, "window.got.length && window.got.at(-1)[1] === 'done'")
            got = await page.evaluate("window.got")
            opens = await page.evaluate("window.opens")
        finally:
            await browser.close()
    async with asyncio.timeout(WAIT):
        whole = await creator_task
    creator.close()

    assert opens == 2  # one reconnection, made by the browser itself
    assert [int(seq.rpartition("-")[2]) for seq, _, _ in got] == list(
        range(1, len(whole.events) + 1)
    )
    assert [(name, data.encode()) for _, name, data in got] == [
        (e.event, e.data) for e in whole.events
    ]


# The page does not close the source on `done`, as many do not: the server has to stop it.
FOLLOW = """
([url, names]) => {
  window.got = [];
  window.opens = 0;
  window.source = new EventSource(url);
  window.source.onopen = () => { window.opens += 1; };
  for (const name of names) {
    window.source.addEventListener(name, (e) => {
      if (e instanceof MessageEvent) window.got.push([e.lastEventId, e.type]);
    });
  }
}
"""


@pytest.mark.asyncio
async def test_eventsource_stops_reconnecting_once_the_run_has_ended(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """After `done` the body ends and the browser reconnects with Last-Event-ID at the channel's
    end; the 204 it gets makes it stop for good (readyState CLOSED), instead of coming back
    every 3 s until the channel's retention is over."""
    from playwright.async_api import Request, async_playwright

    gateway = await start_gateway()
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    async with sdk.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id
    ) as stream:
        await stream.until_done()
        run_id = (await stream.get_final_run()).id
    await sdk.close()
    names = sorted(KNOWN_EVENTS)
    requests: list[str] = []

    def on_request(request: Request) -> None:
        if "/streams/runs/" in request.url:
            requests.append(request.url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            page.on("request", on_request)
            await page.goto(f"{gateway.url}/healthz")
            await page.evaluate(FOLLOW, [f"/streams/runs/{run_id}?since=0", names])
            # Chromium waits about 3 s before it reconnects.
            await wait_for(page, "window.source.readyState === EventSource.CLOSED")
            got = await page.evaluate("window.got")
            opens = await page.evaluate("window.opens")
        finally:
            await browser.close()

    assert got[-1][1] == "done" and [int(seq.rpartition("-")[2]) for seq, _ in got] == list(
        range(1, len(got) + 1)
    )
    assert opens == 1  # the reconnection was answered 204, which is no open
    assert len(requests) == 2
