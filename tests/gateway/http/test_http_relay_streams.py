"""The relay over byte-exact upstream streams: passthrough of every event, and broken streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import StartGateway, Subscriber, read_sse

from parsers.sse import SSEDecoder

FIXTURES = Path(__file__).parents[2] / "data" / "assistants"
HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}

Serve = Callable[[bytes], str]


@pytest_asyncio.fixture
async def fixture_upstream() -> AsyncIterator[Callable[[bytes], str]]:
    """An upstream whose create-run answers with the given SSE bytes (and cannot be polled)."""
    bodies: list[bytes] = []

    async def create_run(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(bodies[-1])
        await response.write_eof()
        return response

    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "gone", "type": "x"}}, status=404)

    app = web.Application()
    app.router.add_post("/v1/threads/{thread_id}/runs", create_run)
    app.router.add_get("/v1/{tail:.*}", not_found)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    def serve(body: bytes) -> str:
        bodies.append(body)
        return url

    yield serve
    await runner.cleanup()


def wire_events(body: bytes) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    return [(e.event, e.data_bytes) for e in decoder.feed(body) + decoder.close() if e.data_bytes]


async def create_run(
    session: aiohttp.ClientSession, url: str
) -> tuple[Subscriber, Subscriber, Subscriber]:
    """(creator, run channel replay, thread channel replay) of one streamed run."""
    async with session.post(
        f"{url}/v1/threads/thread_9Qx/runs",
        json={"assistant_id": "asst_42", "stream": True},
        headers=HEADERS,
    ) as response:
        assert response.status == 200
        creator = await read_sse(response, Subscriber())
    async with session.get(f"{url}/streams/runs/run_7Lm?since=0") as response:
        run = await read_sse(response, Subscriber())
    async with session.get(f"{url}/streams/threads/thread_9Qx?since=0") as response:
        thread = await read_sse(response, Subscriber())
    return creator, run, thread


@pytest.mark.asyncio
async def test_unknown_events_pass_through_untouched(
    start_gateway: StartGateway, fixture_upstream: Serve, session: aiohttp.ClientSession
) -> None:
    body = (FIXTURES / "I-unknown-event.sse").read_bytes()
    gateway = await start_gateway(upstream_url=fixture_upstream(body))
    creator, run, thread = await create_run(session, gateway.url)
    expected = wire_events(body)
    assert "thread.run.step.reasoning" in [name for name, _ in expected]
    assert [(e.event, e.data) for e in creator.events] == expected
    assert run.events == creator.events
    assert thread.events == creator.events


@pytest.mark.asyncio
async def test_truncated_stream_reports_upstream_error(
    start_gateway: StartGateway, fixture_upstream: Serve, session: aiohttp.ClientSession
) -> None:
    whole = (FIXTURES / "A-text.sse").read_bytes()
    cut = whole[: whole.index(b"event: thread.message.delta")] + b"event: thread.mess"
    gateway = await start_gateway(upstream_url=fixture_upstream(cut))
    creator, run, _ = await create_run(session, gateway.url)
    expected = wire_events(cut)
    # The creator gets the events, then the error (the openai SDK raises it), and its end.
    assert creator.ended
    assert [(e.event, e.data) for e in creator.events[:-1]] == expected
    error = creator.events[-1]
    assert error.event == "runcast.upstream_error"
    assert error.json()["reason"] == "stream_truncated"
    assert error.json()["last_status"] == "in_progress"
    # Polling the run failed (404), so subscribers get the error and the end of the segment.
    assert run.events[:-1] == creator.events
    assert run.names[-1] == "done"


@pytest.mark.asyncio
async def test_error_event_then_eof_is_a_clean_end(
    start_gateway: StartGateway, fixture_upstream: Serve, session: aiohttp.ClientSession
) -> None:
    body = (FIXTURES / "C-error-event.sse").read_bytes()
    gateway = await start_gateway(upstream_url=fixture_upstream(body))
    creator, run, _ = await create_run(session, gateway.url)
    assert [(e.event, e.data) for e in creator.events[:-1]] == wire_events(body)
    assert creator.names[-2:] == ["error", "done"]  # `done` supplied for the missing one
    assert run.events == creator.events
