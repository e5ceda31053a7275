"""Graceful drain of a real ``runcast serve`` process on SIGTERM, followed by the openai SDK."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import openai
import orjson
import pytest
from http_helpers import (
    WAIT,
    RecordingHandler,
    clean_environ,
    new_thread,
    serve_process,
    sse_subscribe,
    stream_run,
    ws_subscribe,
)

from gateway.hub import SHUTDOWN_RETRY_MS
from parsers.sse import ServerSentEvent, SSEDecoder

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


class Runcast:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, lines: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.lines = lines

    async def logged(self, text: str) -> None:
        """Read the process's log until a line holds ``text``."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(WAIT):
            while not any(text in line for line in self.lines):
                line = (await self.proc.stderr.readline()).decode()
                assert line, "".join(self.lines)
                self.lines.append(line)

    async def exited(self) -> int:
        """The exit status; the rest of the log is read meanwhile (a full pipe would block it)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(WAIT):
            self.lines.extend((await self.proc.stderr.read()).decode().splitlines(keepends=True))
            return await self.proc.wait()


@asynccontextmanager
async def runcast(*flags: str) -> AsyncIterator[tuple[Runcast, openai.AsyncOpenAI]]:
    command = (sys.executable, "-m", "gateway", "serve", "--port", "0", *flags)
    async with serve_process(*command, env=clean_environ()) as (proc, url, lines):
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-any", max_retries=0)
        try:
            yield Runcast(proc, url, lines), sdk
        finally:
            await sdk.close()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


async def sigterm(server: Runcast) -> None:
    """SIGTERM, returning once the drain has begun (new work is refused from then on)."""
    server.proc.send_signal(signal.SIGTERM)
    await server.logged("shutting down: draining")


async def refused_during_drain(server: Runcast, sdk: openai.AsyncOpenAI, assistant: str) -> None:
    """A new run and a new subscription both get 503 ``shutting_down``."""
    thread = await sdk.beta.threads.create()  # other /v1 calls still pass
    with pytest.raises(openai.InternalServerError) as refused:
        await stream_run(sdk, assistant, thread.id)
    assert refused.value.status_code == 503
    assert refused.value.code == "shutting_down"
    url = f"{server.url}/streams/threads/{thread.id}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "shutting_down"


@pytest.mark.asyncio
async def test_a_run_that_finishes_within_the_drain_completes_and_new_runs_get_503() -> None:
    # 150 deltas 10 ms apart: about 1.5 s, well within the drain timeout.
    async with runcast("--sim-deltas", "150", "--sim-delay-ms", "10", "--drain-timeout", "20") as (
        server,
        sdk,
    ):
        assistant, thread = await new_thread(sdk)
        async with aiohttp.ClientSession() as session:
            thread_response, thread_sub = await sse_subscribe(
                session, f"{server.url}/streams/threads/{thread}", stop_at_done=2
            )
            handler = RecordingHandler()
            creator = asyncio.create_task(stream_run(sdk, assistant, thread, handler=handler))
            async with asyncio.timeout(WAIT):
                await handler.run_started.wait()
            run_url = f"{server.url}/streams/runs/{handler.run_id}?since=0"
            run_response, run_sub = await sse_subscribe(session, run_url)
            ws, ws_sub = await ws_subscribe(session, run_url)
            await until(lambda: handler.deltas >= 5)

            await sigterm(server)
            await refused_during_drain(server, sdk, assistant)

            async with asyncio.timeout(WAIT):
                await creator
                run_events, ws_events = await run_sub, await ws_sub
                closing = await ws.receive()  # right after `done`: the channel has ended
                # The thread channel outlives the run: it is told of the shutdown at the end.
                thread_events = await thread_sub
            assert await server.exited() == 0
            thread_response.close()
            run_response.close()

    assert handler.deltas == 150
    assert handler.seen[-1][0] == "thread.run.completed"
    for sub in (run_events, ws_events):
        assert sub.names.count("thread.message.delta") == 150
        assert sub.names[-2:] == ["thread.run.completed", "done"]
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.OK)
    assert thread_events.ended
    assert thread_events.names[-3:] == ["thread.run.completed", "done", "runcast.shutdown"]
    assert any("drained: every run finished" in line for line in server.lines)


async def read_raw_sse(response: aiohttp.ClientResponse) -> list[ServerSentEvent]:
    """Every SSE event to the end of the body, with its ``retry`` field."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    async for chunk in response.content.iter_any():
        events.extend(decoder.feed(chunk))
    return events


@pytest.mark.asyncio
async def test_a_run_longer_than_the_drain_is_ended_explicitly_for_everyone() -> None:
    # 2,000 deltas 10 ms apart: 20 s, far longer than the 1 s drain.
    drain_timeout = 1.0
    flags = ("--sim-deltas", "2000", "--sim-delay-ms", "10", "--drain-timeout", str(drain_timeout))
    async with runcast(*flags) as (server, sdk):
        assistant, thread = await new_thread(sdk)
        handler = RecordingHandler()
        creator = asyncio.create_task(stream_run(sdk, assistant, thread, handler=handler))
        async with asyncio.timeout(WAIT):
            await handler.run_started.wait()
        async with aiohttp.ClientSession() as session:
            run_url = f"{server.url}/streams/runs/{handler.run_id}?since=0"
            sse_response = await session.get(run_url)
            assert sse_response.status == 200
            sse_sub = asyncio.create_task(read_raw_sse(sse_response))
            ws, ws_sub = await ws_subscribe(session, run_url)
            await until(lambda: handler.deltas >= 5)

            loop = asyncio.get_running_loop()
            signalled = loop.time()
            await sigterm(server)
            await refused_during_drain(server, sdk, assistant)
            async with asyncio.timeout(WAIT):
                # The SDK raises instead of ending as if the run were over.
                with pytest.raises(openai.APIError) as raised:
                    await creator
                sse_events = await sse_sub
                ws_events = await ws_sub
            status = await server.exited()
            took = loop.time() - signalled
            sse_response.close()

    assert status == 0
    assert drain_timeout <= took < drain_timeout + 5.0
    assert "shutting down" in raised.value.message
    assert raised.value.code == "shutting_down"
    assert 5 <= handler.deltas < 2000
    # SSE: the run so far, then runcast.shutdown carrying `retry:` for EventSource.
    *run, notice = sse_events
    assert run[-1].event == "thread.message.delta"
    assert notice.event == "runcast.shutdown"
    assert notice.retry == SHUTDOWN_RETRY_MS
    epoch, _, seq = run[-1].id.rpartition("-")
    assert orjson.loads(notice.data) == {
        "epoch": epoch,
        "seq": int(seq),
        "retry_ms": SHUTDOWN_RETRY_MS,
    }
    # WebSocket: the same notice, then close 1012 (service restart).
    assert ws_events.ended and ws_events.names[-1] == "runcast.shutdown"
    assert ws.close_code == aiohttp.WSCloseCode.SERVICE_RESTART
    assert any("drain over: ending 1 run(s) still going" in line for line in server.lines)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "channel", "delta"),
    [
        (
            "/v1/responses",
            {"model": "gpt-5", "input": "Hi", "stream": True},
            ("runcast-response-id", "responses"),
            "response.output_text.delta",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            ("runcast-completion-id", "chat"),
            "message",
        ),
    ],
)
async def test_a_stream_longer_than_the_drain_tells_its_own_channel_of_the_shutdown(
    path: str, body: dict[str, object], channel: tuple[str, str], delta: str
) -> None:
    flags = ("--sim-deltas", "2000", "--sim-delay-ms", "10", "--drain-timeout", "1")
    header, kind = channel
    async with runcast(*flags) as (server, _), aiohttp.ClientSession() as session:
        bearer = {"Authorization": "Bearer sk-any"}
        creator = await session.post(server.url + path, json=body, headers=bearer)
        assert creator.status == 200
        stream_url = f"{server.url}/streams/{kind}/{creator.headers[header]}?since=0"
        sse_response = await session.get(stream_url)
        sse_sub = asyncio.create_task(read_raw_sse(sse_response))
        ws, ws_sub = await ws_subscribe(session, stream_url)
        seen = b""
        async with asyncio.timeout(WAIT):
            while seen.count(b"delta") < 10:  # 5 deltas (their names and data) at least
                seen += await creator.content.readany()
        await sigterm(server)
        async with asyncio.timeout(WAIT):
            sse_events, ws_events = await sse_sub, await ws_sub
        assert await server.exited() == 0
        sse_response.close()
        creator.close()

    # Told, not ended as if the stream were over: EventSource reconnects elsewhere.
    *stream, notice = sse_events
    assert stream[-1].event == delta
    assert (notice.event, notice.retry) == ("runcast.shutdown", SHUTDOWN_RETRY_MS)
    assert ws_events.names[-1] == "runcast.shutdown"
    assert ws.close_code == aiohttp.WSCloseCode.SERVICE_RESTART


@pytest.mark.asyncio
async def test_the_same_signal_twice_at_once_does_not_cut_the_drain_short() -> None:
    # A --workers worker gets its process group's SIGTERM and the supervisor's copy of it: that
    # is one request to stop, not the second one that ends the drain at once.
    async with runcast("--sim-deltas", "150", "--sim-delay-ms", "10", "--drain-timeout", "20") as (
        server,
        sdk,
    ):
        assistant, thread = await new_thread(sdk)
        handler = RecordingHandler()
        creator = asyncio.create_task(stream_run(sdk, assistant, thread, handler=handler))
        await until(lambda: handler.deltas >= 5)
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            await creator
        assert await server.exited() == 0
    assert handler.deltas == 150
    assert any("drained: every run finished" in line for line in server.lines)
