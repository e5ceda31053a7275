"""What runcast keeps to itself: its upstream key, the upstream's other paths, key scoping, and
credentials in URLs; and what ``/healthz`` tells anyone who asks.

Every test runs runcast on a real socket in front of an upstream it does not control: the
scripted :class:`~hostile_upstream.HostileUpstream` for run streams, or a recording upstream of
this module for plain ``/v1`` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from hostile_upstream import Cut, Gate, HostileUpstream, Script, Send, golden_events, run_json
from http_helpers import SECRET, WAIT, raw_connection, served_upstream
from multidict import CIMultiDictProxy

from gateway.http.app import create_app, statistics
from gateway.http.runner import start_runner
from gateway.http.state import TOKENS
from gateway.settings import Settings
from gateway.upstream import UpstreamSettings

KEY = "sk-upstream-Zq0123456789abcdefZq0123456789abcdef"
RUNCAST_KEY = "rk-runcast-caller-key"
CALLER = {"Authorization": f"Bearer {RUNCAST_KEY}", "OpenAI-Beta": "assistants=v2"}
RUN_BODY = {"assistant_id": "asst_42", "stream": True}
MASKED = "***"


@dataclasses.dataclass
class Runcast:
    url: str
    app: web.Application
    session: aiohttp.ClientSession

    async def raw(self, request: bytes) -> bytes:
        """Send ``request`` as is on a fresh connection; the whole answer (Connection: close)."""
        reader, writer = await raw_connection(self.url)
        try:
            async with asyncio.timeout(WAIT):
                writer.write(request)
                await writer.drain()
                return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()


StartRuncast = Callable[..., Awaitable[Runcast]]


@pytest_asyncio.fixture
async def start_runcast() -> AsyncIterator[StartRuncast]:
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:

        async def start(
            upstream_url: str, *, key: str | None = KEY, organization: str | None = None, **kw: Any
        ) -> Runcast:
            values: dict[str, Any] = {
                "port": 0,
                "subscribe_auth": "open",
                "token_secret": SECRET,
                "recovery_timeout": 5.0,
                "shutdown_timeout": 2.0,
                "api_keys": (RUNCAST_KEY,),
                **kw,
            }
            upstream = UpstreamSettings(
                base_url=upstream_url,
                api_key=key,
                organization=organization,
                max_retries=0,
                idle_timeout=10.0,
            )
            app = create_app(Settings(upstream=upstream, **values))
            runner, url = await start_runner(app, "127.0.0.1", 0)
            runners.append(runner)
            return Runcast(url=url, app=app, session=session)

        yield start
        for runner in reversed(runners):
            await runner.cleanup()


# -- the upstream key never leaves ----------------------------------------------------------------


def quoting(events: list[tuple[str, bytes]], index: int, text: str) -> list[tuple[str, bytes]]:
    """``events`` with the text delta at ``index`` saying ``text``."""
    name, data = events[index]
    delta = orjson.loads(data)
    delta["delta"]["content"][0]["text"]["value"] = text
    return [*events[:index], (name, orjson.dumps(delta)), *events[index + 1 :]]


def sse(events: list[tuple[str, bytes]]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), data) for name, data in events)


def error_body(message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return orjson.dumps({"error": error})


@dataclasses.dataclass
class Seen:
    """Every byte each side of one run received."""

    creator: bytes = b""
    sse: dict[str, bytes] = dataclasses.field(default_factory=dict)
    ws: list[str] = dataclasses.field(default_factory=list)

    def everything(self) -> bytes:
        return b"".join([self.creator, *self.sse.values(), *(t.encode() for t in self.ws)])


async def read_until_done(response: aiohttp.ClientResponse) -> bytes:
    data = b""
    async with asyncio.timeout(WAIT):
        async for chunk in response.content.iter_any():
            data += chunk
            if b"event: done\n" in data:
                break
    response.close()
    return data


async def read_ws_until_done(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    frames: list[str] = []
    async with asyncio.timeout(WAIT):
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.TEXT
            frames.append(msg.data)
            if orjson.loads(msg.data)["event"] == "done":
                break
    await ws.close()
    return frames


@pytest.mark.asyncio
async def test_key_quoted_in_a_run_stream_reaches_nobody(start_runcast: StartRuncast) -> None:
    thread_id, run_id = "thread_leak", "run_leak"
    events = quoting(golden_events(run_id, thread_id), 8, f" plus {KEY} two")
    upto = sse(events[:9])
    cut = upto.index(KEY.encode()) + 7  # the key straddles two pieces of the body
    opened = asyncio.Event()
    async with HostileUpstream() as upstream:
        upstream.script(
            thread_id,
            Script(
                [
                    Send(upto[:cut]),
                    Gate(opened, keepalive=None),
                    Send(upto[cut:]),
                    Send(sse([("error", error_body(f"Incorrect API key provided: {KEY}"))])),
                ],
                headers={"x-request-id": f"req_{KEY}"},
            ),
        )
        runcast = await start_runcast(upstream.url)
        session = runcast.session
        thread = await session.get(f"{runcast.url}/streams/threads/{thread_id}")
        creator = await session.post(
            f"{runcast.url}/v1/threads/{thread_id}/runs", json=RUN_BODY, headers=CALLER
        )
        assert creator.status == 200, await creator.text()
        run_sse = await session.get(f"{runcast.url}/streams/runs/{run_id}?since=0")
        run_ws = await session.ws_connect(f"{runcast.url}/streams/runs/{run_id}?since=0")
        # The creator has the event before the one quoting the key: the upstream is at the gate,
        # with the key's first bytes sent and its last ones not.
        head = b""
        async with asyncio.timeout(WAIT):
            while b'"value":"Two"' not in head:
                head += await creator.content.readany()
        opened.set()
        seen = Seen()
        seen.creator, seen.sse["thread"], seen.sse["run"], seen.ws = await asyncio.gather(
            read_until_done(creator),
            read_until_done(thread),
            read_until_done(run_sse),
            read_ws_until_done(run_ws),
        )
        seen.creator = head + seen.creator
        creator_headers = creator.headers
        # History replay after the run, and the snapshot.
        resumed = await session.get(f"{runcast.url}/streams/runs/{run_id}?since=0")
        seen.sse["resumed"] = await read_until_done(resumed)
        async with session.get(f"{runcast.url}/streams/runs/{run_id}/snapshot") as response:
            snapshot = await response.read()

    assert KEY not in creator_headers["x-request-id"]
    assert creator_headers["x-request-id"] == f"req_{MASKED}"
    assert KEY.encode() not in seen.everything()
    assert KEY.encode() not in snapshot
    # What the key said is still there, masked, for every side.
    for body in [seen.creator, *seen.sse.values()]:
        assert f" plus {MASKED} two".encode() in body
        assert f"Incorrect API key provided: {MASKED}".encode() in body
    assert sum(f" plus {MASKED} two" in frame for frame in seen.ws) == 1
    text = orjson.loads(snapshot)["snapshot"]["messages"][0]["content"]
    assert "".join(part["text"]["value"] for part in text) == f"Two plus {MASKED} two"


@pytest.mark.asyncio
async def test_key_quoted_by_a_recovery_poll_reaches_nobody(start_runcast: StartRuncast) -> None:
    thread_id, run_id = "thread_poll", "run_poll"
    failed = orjson.loads(run_json(run_id, thread_id, "failed"))
    failed["last_error"] = {"code": "server_error", "message": f"bad key {KEY}"}
    async with HostileUpstream() as upstream:
        upstream.script(thread_id, Script([Send(sse(golden_events(run_id, thread_id)[:8])), Cut()]))
        upstream.poll(run_id, orjson.dumps(failed))
        runcast = await start_runcast(upstream.url)
        session = runcast.session
        creator = await session.post(
            f"{runcast.url}/v1/threads/{thread_id}/runs", json=RUN_BODY, headers=CALLER
        )
        assert creator.status == 200
        thread = await session.get(f"{runcast.url}/streams/threads/{thread_id}?since=0")
        run_ws = await session.ws_connect(f"{runcast.url}/streams/runs/{run_id}?since=0")
        creator_bytes = await creator.read()
        thread_bytes, frames = await asyncio.gather(
            read_until_done(thread), read_ws_until_done(run_ws)
        )
        async with session.get(f"{runcast.url}/streams/runs/{run_id}/snapshot") as response:
            snapshot = await response.read()
    everything = b"".join([creator_bytes, thread_bytes, snapshot, *(f.encode() for f in frames)])
    assert b"event: thread.run.failed" in thread_bytes
    assert f"bad key {MASKED}".encode() in thread_bytes
    assert KEY.encode() not in everything


@pytest.mark.asyncio
async def test_key_quoted_in_a_refused_run_reaches_nobody(start_runcast: StartRuncast) -> None:
    thread_id = "thread_refused"
    async with HostileUpstream() as upstream:
        upstream.script(
            thread_id,
            Script(
                [Send(error_body(f"key {KEY} has an active run"))],
                status=400,
                content_type="application/json",
                headers={"x-request-id": f"req_{KEY}", "x-ratelimit-limit-requests": KEY},
            ),
        )
        runcast = await start_runcast(upstream.url)
        async with runcast.session.post(
            f"{runcast.url}/v1/threads/{thread_id}/runs", json=RUN_BODY, headers=CALLER
        ) as response:
            assert response.status == 400
            body = await response.read()
            headers = response.headers
    assert orjson.loads(body)["error"]["message"] == f"key {MASKED} has an active run"
    assert headers["x-request-id"] == f"req_{MASKED}"
    assert headers["x-ratelimit-limit-requests"] == MASKED


# -- a recording upstream for plain /v1 calls -----------------------------------------------------


@dataclasses.dataclass
class Recording:
    url: str
    requests: list[web.Request]
    """Every request that reached the upstream."""
    release: asyncio.Event
    """Lets ``/stream`` send the rest of the key."""


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[Recording]:
    requests: list[web.Request] = []
    release = asyncio.Event()
    quoted = f"key={KEY}"

    async def handle(request: web.Request) -> web.StreamResponse:
        requests.append(request)
        if request.path.endswith("/stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            body = f"data: {quoted}\n\n".encode()
            split = body.index(KEY.encode()) + 10
            await response.write(body[:split])
            await release.wait()
            await response.write(body[split:])
            await response.write_eof()
            return response
        return web.json_response(
            {"object": "list", "data": [quoted], "path": request.raw_path},
            headers={"x-request-id": quoted, "openai-organization": "org-upstream"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        async with served_upstream(app) as url:
            yield Recording(url, requests, release)
    finally:
        release.set()


@pytest.mark.asyncio
async def test_key_quoted_in_proxied_bodies_and_headers_reaches_nobody(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url)
    session = runcast.session
    async with session.get(f"{runcast.url}/v1/files", headers=CALLER) as response:
        assert response.status == 200
        assert response.headers["x-request-id"] == f"key={MASKED}"
        assert (await response.json())["data"] == [f"key={MASKED}"]
    async with session.get(f"{runcast.url}/v1/files/stream", headers=CALLER) as response:
        assert response.content_type == "text/event-stream"
        # The key's first ten bytes are out upstream: what comes before them arrives, not them.
        first = await asyncio.wait_for(response.content.readany(), WAIT)
        assert first == b"data: key="
        recording.release.set()
        rest = await asyncio.wait_for(response.content.read(), WAIT)
    assert first + rest == f"data: key={MASKED}\n\n".encode()


SHORTENED = [
    KEY[:6] + "..." + KEY[-4:],
    KEY[:3] + "****" + KEY[-4:],
    KEY[:8] + "*****..." + KEY[-4:],
]
"""The key as upstream errors quote it shortened (OpenAI's style last)."""


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [403, 400, 429])
async def test_key_quoted_shortened_in_an_upstream_error_reaches_nobody(
    start_runcast: StartRuncast, status: int
) -> None:
    # Only a 401's body was replaced, and only the whole key masked: a 403 quoting
    # "sk-ups...cdef" told the caller the key's first and last characters.
    async def refuse(request: web.Request) -> web.Response:
        quoted = " / ".join(SHORTENED)
        return web.json_response(
            {"error": {"message": f"key {quoted} may not", "type": "x", "param": None}},
            status=status,
            headers={"x-request-id": SHORTENED[0]},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with served_upstream(app) as url:
        runcast = await start_runcast(url)
        async with runcast.session.get(f"{runcast.url}/v1/files", headers=CALLER) as response:
            assert response.status == status
            body = await response.json()
            assert response.headers["x-request-id"] == MASKED
    assert body["error"]["message"] == "key *** / *** / *** may not"


@pytest.mark.asyncio
async def test_without_a_key_nothing_is_masked(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    # The caller's own bearer goes upstream: runcast has no key of its own to hide.
    runcast = await start_runcast(recording.url, key=None, api_keys=())
    headers = {"Authorization": "Bearer sk-callers-own"}
    async with runcast.session.get(f"{runcast.url}/v1/files", headers=headers) as response:
        assert (await response.json())["data"] == [f"key={KEY}"]


CALLERS_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
"""A caller's own upstream key passed on (an Azure-style one, no ``sk-`` shape to redact)."""


@pytest.mark.asyncio
async def test_a_callers_key_passed_on_and_quoted_reaches_no_subscriber(
    start_runcast: StartRuncast,
) -> None:
    # Only runcast's own key was scrubbed: without one, the caller's key an upstream's error
    # event quoted went to every subscriber, the history, the snapshot, and runcast's own
    # runcast.upstream_lost message quoted it again.
    async def create(request: web.Request) -> web.StreamResponse:
        quoted = request.headers["Authorization"]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {
            "id": "chatcmpl-pass",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
        }
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        error = {"error": {"message": f"boom {quoted} and {quoted[7:15]}...{quoted[-4:]}"}}
        await response.write(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
        return response

    async def files(request: web.Request) -> web.Response:
        quoted = request.headers["Authorization"]
        return web.json_response({"data": [quoted]}, headers={"x-request-id": quoted})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    app.router.add_get("/v1/files", files)
    async with served_upstream(app) as url:
        runcast = await start_runcast(url, key=None, api_keys=())
        session = runcast.session
        caller = {"Authorization": f"Bearer {CALLERS_KEY}"}
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with session.post(
            f"{runcast.url}/v1/chat/completions", json=body, headers=caller
        ) as response:
            creator = await response.read()
        async with session.get(f"{runcast.url}/streams/chat/chatcmpl-pass?since=0") as replay:
            history = await replay.read()
        async with session.get(f"{runcast.url}/streams/chat/chatcmpl-pass/snapshot") as got:
            snapshot = await got.read()
        async with session.get(f"{runcast.url}/v1/files", headers=caller) as response:
            proxied = await response.json()
            request_id = response.headers["x-request-id"]
    for seen in (creator, history, snapshot):
        assert CALLERS_KEY.encode() not in seen
        assert CALLERS_KEY[-4:].encode() not in seen
    assert b"boom Bearer *** and ***" in creator
    assert b"boom Bearer *** and ***" in history
    assert proxied["data"] == [f"Bearer {MASKED}"]
    assert request_id == f"Bearer {MASKED}"


FUNCTION_KEY = "FUNCKEY0123456789SECRET"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [200, 404])
async def test_the_upstream_urls_credential_query_values_reach_no_caller(
    start_runcast: StartRuncast, status: int
) -> None:
    # A function key in the upstream URL (?code=) goes with every request; an error body
    # echoing the request's URL handed it to the caller.
    async def echo(request: web.Request) -> web.Response:
        said = f"no {request.url} (code {request.query['code']}, {FUNCTION_KEY[:6]}...{FUNCTION_KEY[-4:]})"
        return web.json_response(
            {"error": {"message": said, "version": request.query["api-version"]}},
            status=status,
            headers={"x-request-id": request.query_string},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with served_upstream(app) as url:
        runcast = await start_runcast(f"{url}?code={FUNCTION_KEY}&api-version=2024-06-01")
        async with runcast.session.get(f"{runcast.url}/v1/echo", headers=CALLER) as response:
            assert response.status == status
            body = await response.json()
            echoed = response.headers["x-request-id"]
    assert FUNCTION_KEY not in str(body) and FUNCTION_KEY not in echoed
    assert body["error"]["message"].endswith("(code ***, ***)")
    assert body["error"]["version"] == "2024-06-01"  # not a credential: left alone
    assert echoed == "code=***&api-version=2024-06-01"


@pytest.mark.parametrize("key", ["x", "EMPTY", "anything"])
@pytest.mark.asyncio
async def test_a_placeholder_key_passed_on_leaves_answers_as_they_are(
    start_runcast: StartRuncast, key: str
) -> None:
    # A caller's key passed on was scrubbed whatever its length: with `Bearer x` every "x" of
    # the answer became ***, "index" among them, and the SDK's stream helpers failed on it.
    chunk = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Is there anything else? EMPTY box"}}],
    }
    sent = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"

    async def create(request: web.Request) -> web.Response:
        return web.Response(body=sent, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    async with served_upstream(app) as url:
        runcast = await start_runcast(url, key=None, api_keys=())
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with runcast.session.post(
            f"{runcast.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            got = await response.read()
    data = [line for line in got.split(b"\n") if line.startswith(b"data: ")]
    assert data == [line for line in sent.split(b"\n") if line.startswith(b"data: ")]


@pytest.mark.asyncio
async def test_ordinary_query_values_of_the_upstream_url_are_left_in_answers(
    start_runcast: StartRuncast,
) -> None:
    # Every query value of 4 characters and more was scrubbed from answers, and names were
    # matched inside words: ?use_session=true turned every JSON `true` into ***.
    # A named credential of 8 characters is scrubbed all the same (it was let through when
    # only 12 and more were, as for placeholder keys), and so is one of a compound name.
    async def echo(request: web.Request) -> web.Response:
        q = request.query
        said = [q["api-version"], q["token"], q["accesstoken"]]
        return web.json_response({"ok": True, "said": said})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    query = (
        "use_session=true&api-version=2025-04-01-preview&unicode=auto"
        "&token=abcdefgh&accesstoken=Ab3d-E6gH-9jK2"
    )
    async with served_upstream(app) as url:
        runcast = await start_runcast(f"{url}?{query}")
        async with runcast.session.get(f"{runcast.url}/v1/echo", headers=CALLER) as response:
            body = await response.json()
    assert body == {"ok": True, "said": ["2025-04-01-preview", "***", "***"]}


# -- no path escape through the proxy -------------------------------------------------------------

ESCAPES = [
    "/v1/../streams/runs/run_1",
    "/v1/threads/T/../../tokens",
    "/v1/./threads",
    "/v1/threads/.",
    "/v1/%2e%2e/tokens",
    "/v1/%2E%2e/tokens",
    "/v1/.%2E/tokens",
    "/v1/%252e%252e/tokens",
    "/v1/..;/tokens",
    "/v1/threads/a%2fb",
    "/v1/threads/a%2F..%2Fb",
    "/v1/threads/a%5cb",
    "/v1/threads/a%5C..%5Cb",
    "/v1/threads//runs",
    "/v1//threads",
    "/v1/threads/",
    "/v1/",
]


def request_line(method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {RUNCAST_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def parse_answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"\r\ntransfer-encoding: chunked" in head.lower():  # a proxied 2xx body, relayed as it came
        body = dechunked(body)
    return status, orjson.loads(body)


def dechunked(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ESCAPES)
async def test_paths_that_leave_v1_are_refused_before_the_upstream(
    start_runcast: StartRuncast, recording: Recording, path: str
) -> None:
    runcast = await start_runcast(recording.url)
    for method, body in (("GET", b""), ("POST", orjson.dumps(RUN_BODY))):
        status, answer = parse_answer(await runcast.raw(request_line(method, path, body)))
        assert status == 400, (method, path, answer)
        assert answer["error"]["type"] == "invalid_request_error"
        assert answer["error"]["code"] == "invalid_path"
        assert answer["error"]["message"].startswith("invalid path: ")
    assert recording.requests == []


@pytest.mark.asyncio
async def test_ordinary_paths_still_pass_byte_for_byte(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url)
    for path in ("/v1/threads/thread_1/messages", "/v1/files/file%20a.b", "/v1/vector_stores"):
        status, answer = parse_answer(await runcast.raw(request_line("GET", path)))
        assert status == 200
        assert answer["path"] == path
    assert len(recording.requests) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["TRACE", "PUT", "PATCH", "OPTIONS", "PROPFIND"])
async def test_methods_the_api_does_not_use_are_refused_before_the_upstream(
    start_runcast: StartRuncast, recording: Recording, method: str
) -> None:
    # They went upstream with runcast's key: a TRACE echoed by the upstream or a proxy on the
    # way quoted the request head back, key included.
    runcast = await start_runcast(recording.url)
    raw = await runcast.raw(request_line(method, "/v1/files"))
    status, answer = parse_answer(raw)
    assert status == 405, answer
    assert answer["error"]["code"] == "method_not_allowed"
    assert answer["error"]["message"] == f"method {method} not allowed for /v1/files"
    head = raw.partition(b"\r\n\r\n")[0].decode().lower()
    assert "\r\nallow: delete,get,head,post\r\n" in head
    assert recording.requests == []


@pytest.mark.asyncio
async def test_the_api_methods_and_cors_preflights_still_pass(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url, cors_origins=("https://app.example",))
    for method in ("GET", "HEAD", "POST", "DELETE"):
        status = int((await runcast.raw(request_line(method, "/v1/files"))).split(b" ", 2)[1])
        assert status == 200, method
    assert [r.method for r in recording.requests] == ["GET", "HEAD", "POST", "DELETE"]
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with runcast.session.options(f"{runcast.url}/v1/files", headers=preflight) as response:
        assert response.status == 204
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert len(recording.requests) == 4


def raw_get(path: str, *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n" % (
        path.encode(),
        b"".join(header + b"\r\n" for header in headers),
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"Authorization: Bearer sk-\xff\xfeabc", "Authorization"),
        (b"X-Stainless-A: \xc3\x28\xff", "X-Stainless-A"),
        (b"OpenAI-Beta: assistants=\xe9", "OpenAI-Beta"),
    ],
)
async def test_a_header_that_cannot_go_byte_for_byte_is_a_400(
    start_runcast: StartRuncast, recording: Recording, header: bytes, name: str
) -> None:
    # aiohttp's client leaves surrogate escapes out: "Bearer sk-\xff\xfeabc" went as
    # "Bearer sk-abc", "\xc3\x28\xff" as "(".
    runcast = await start_runcast(recording.url, key=None, api_keys=())
    auth = b"" if name == "Authorization" else b"Authorization: Bearer sk-callers-own"
    raw = await runcast.raw(raw_get("/v1/files", header, *([auth] if auth else [])))
    status, answer = parse_answer(raw)
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_header"
    assert answer["error"]["param"] == name
    assert name in answer["error"]["message"]
    assert b"\xff" not in raw and b"\xe9" not in raw and b"abc" not in raw
    assert recording.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/streams/runs/run_1", "/streams/runs/run_1/snapshot"])
async def test_a_subscribe_token_that_is_not_utf8_is_an_invalid_token(
    start_runcast: StartRuncast, recording: Recording, path: str
) -> None:
    # A subscribe token is checked, never forwarded: a 401 as for any bad token (a runcast key
    # in that state is a 401 likewise), whose message used to be the codec's exception text.
    runcast = await start_runcast(recording.url, subscribe_auth="token")
    raw = await runcast.raw(raw_get(path, b"Authorization: Bearer \xff\xfe"))
    status, answer = parse_answer(raw)
    assert status == 401, answer
    assert answer["error"]["code"] == "invalid_token"
    assert answer["error"]["message"] == "invalid subscribe token: not UTF-8"
    assert recording.requests == []


@pytest.mark.asyncio
async def test_headers_in_utf8_go_byte_for_byte(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url, key=None, api_keys=())
    raw = await runcast.raw(
        raw_get(
            "/v1/files",
            "Authorization: Bearer sk-caf\u00e9".encode(),
            "X-Stainless-Os: \u00e9t\u00e9 \u2603".encode(),
        )
    )
    assert parse_answer(raw)[0] == 200
    [request] = recording.requests
    sent = {k: v.encode("utf-8", "surrogateescape") for k, v in request.headers.items()}
    assert sent["Authorization"] == "Bearer sk-caf\u00e9".encode()
    assert sent["X-Stainless-Os"] == "\u00e9t\u00e9 \u2603".encode()


# -- runcast's key goes with runcast's organization and project -----------------------------------

SCOPE = {"OpenAI-Organization": "org-caller", "OpenAI-Project": "proj-caller"}


def scope_of(request: web.Request) -> tuple[str | None, str | None]:
    return request.headers.get("OpenAI-Organization"), request.headers.get("OpenAI-Project")


@pytest.mark.asyncio
async def test_callers_cannot_rescope_runcasts_key(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url, organization="org-runcast")
    async with runcast.session.get(
        f"{runcast.url}/v1/files", headers={**CALLER, **SCOPE}
    ) as response:
        assert response.status == 200
    (request,) = recording.requests
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert scope_of(request) == ("org-runcast", None)


@pytest.mark.asyncio
async def test_callers_scope_their_own_key(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url, key=None, api_keys=())
    headers = {"Authorization": "Bearer sk-callers-own", **SCOPE}
    async with runcast.session.get(f"{runcast.url}/v1/files", headers=headers) as response:
        assert response.status == 200
    (request,) = recording.requests
    assert request.headers["Authorization"] == "Bearer sk-callers-own"
    assert scope_of(request) == ("org-caller", "proj-caller")


# -- keys do not travel in URLs -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["token", "open"])
async def test_runcast_key_in_the_url_is_refused(
    start_runcast: StartRuncast, recording: Recording, mode: str
) -> None:
    runcast = await start_runcast(recording.url, subscribe_auth=mode)
    session = runcast.session
    for path in ("/streams/runs/run_1", "/streams/runs/run_1/snapshot", "/streams/threads/t_1"):
        async with session.get(f"{runcast.url}{path}?token={RUNCAST_KEY}") as response:
            assert response.status == 401, path
            error = (await response.json())["error"]
        assert error["code"] == "api_key_in_url"
        assert "Authorization header" in error["message"]
        assert "subscribe token" in error["message"]
    # In the Authorization header the key still opens the channel (404: no such run yet).
    auth = {"Authorization": f"Bearer {RUNCAST_KEY}"}
    async with session.get(f"{runcast.url}/streams/runs/run_1/snapshot", headers=auth) as response:
        assert response.status == 404
    # A subscribe token still travels in ?token=.
    async with session.post(
        f"{runcast.url}/tokens", json={"run_id": "run_1"}, headers=auth
    ) as response:
        token = (await response.json())["token"]
    async with session.get(f"{runcast.url}/streams/runs/run_1/snapshot?token={token}") as response:
        assert response.status == 404


async def golden_run(
    start_runcast: StartRuncast, upstream: HostileUpstream, thread_id: str, run_id: str
) -> tuple[Runcast, CIMultiDictProxy[str]]:
    """runcast in front of ``upstream``, through which one run streamed whole; the run's head."""
    upstream.script(thread_id, Script([Send(sse(golden_events(run_id, thread_id)))]))
    runcast = await start_runcast(upstream.url)
    url = f"{runcast.url}/v1/threads/{thread_id}/runs"
    async with runcast.session.post(url, json=RUN_BODY, headers=CALLER) as creator:
        await creator.read()
        return runcast, creator.headers


# -- every answer's type is final --------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_answer_forbids_content_sniffing(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    answers = [
        ("/healthz", {}),
        ("/client/runcast-client.js", {}),
        ("/no/such/<b>page</b>", {}),  # a 404 that names the path
        ("/v1/files/file_1/content", CALLER),  # proxied: the upstream's content type
        ("/v1/threads", {}),  # 401
    ]
    runcast = await start_runcast(recording.url)
    for path, headers in answers:
        async with runcast.session.get(runcast.url + path, headers=headers) as response:
            assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    assert len(recording.requests) == 1
    async with HostileUpstream() as upstream:
        runcast, creator = await golden_run(start_runcast, upstream, "thread_sniff", "run_sniff")
        assert creator.get("X-Content-Type-Options") == "nosniff"
        stream = f"{runcast.url}/streams/runs/run_sniff?since=0"
        async with runcast.session.get(stream) as subscriber:
            assert subscriber.headers.get("X-Content-Type-Options") == "nosniff"


# -- /healthz -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_healthz_shows_liveness_only(start_runcast: StartRuncast) -> None:
    thread_id, run_id = "thread_health", "run_health"
    async with HostileUpstream() as upstream:
        runcast, _ = await golden_run(start_runcast, upstream, thread_id, run_id)
        async with runcast.session.get(f"{runcast.url}/healthz") as response:
            assert response.status == 200
            body = await response.read()
    assert orjson.loads(body) == {"status": "ok"}
    # The counters stay in the process.
    counters = statistics(runcast.app)
    assert counters.relays.started == 1
    # Each event went to the run's channel and its thread's.
    assert counters.hub.events_published == 2 * len(golden_events(run_id, thread_id))


# -- WebSocket from other sites -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_open_mode_refuses_websockets_from_pages_of_other_sites(
    start_runcast: StartRuncast, recording: Recording
) -> None:
    runcast = await start_runcast(recording.url)
    allowing = await start_runcast(recording.url, cors_origins=("http://app.example",))
    host = runcast.url.removeprefix("http://")

    async def upgrade(base: str, headers: dict[str, str], query: str = "") -> int:
        url = f"{base}/streams/channels/s42{query}"
        try:
            async with runcast.session.ws_connect(url, headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status

    assert await upgrade(runcast.url, {"Origin": "http://evil.example"}) == 403
    assert await upgrade(runcast.url, {"Origin": "null"}) == 403
    assert await upgrade(runcast.url, {}) == 101  # not a browser
    assert await upgrade(runcast.url, {"Origin": f"http://{host}"}) == 101  # its own pages
    behind_proxy = {"Origin": "https://gw.example", "X-Forwarded-Host": "gw.example"}
    assert await upgrade(runcast.url, behind_proxy) == 101
    assert await upgrade(allowing.url, {"Origin": "http://app.example"}) == 101
    assert await upgrade(allowing.url, {"Origin": "http://evil.example"}) == 403
    # A page of another site that holds a subscribe token (its backend asked POST /tokens)
    # shows it, as it would to a gateway that needs tokens; a forged one does not pass.
    evil_page = {"Origin": "http://evil.example"}
    held = runcast.app[TOKENS].mint("channel:s42").token
    assert await upgrade(runcast.url, evil_page, f"?token={held}") == 101
    assert await upgrade(runcast.url, evil_page, f"?token={held[:-2]}") == 401
    other = runcast.app[TOKENS].mint("channel:s43").token
    assert await upgrade(runcast.url, evil_page, f"?token={other}") == 403
    # With tokens, the token is the credential: a page of another site has none to show.
    tokens = await start_runcast(recording.url, subscribe_auth="token")
    token = tokens.app[TOKENS].mint("channel:s42").token
    evil = {"Origin": "http://evil.example"}
    assert await upgrade(tokens.url, {**evil, "Authorization": f"Bearer {token}"}) == 101
    assert await upgrade(tokens.url, evil) == 401
    # SSE is the browser's to guard (no Access-Control-Allow-Origin, the page cannot read it).
    url = f"{runcast.url}/streams/channels/s42"
    async with runcast.session.get(url, headers={"Origin": "http://evil.example"}) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.asyncio
async def test_key_spelled_across_deltas_is_not_joined_whole_in_the_snapshot(
    start_runcast: StartRuncast,
) -> None:
    # Each event is scrubbed as it arrives, but the snapshot joins the deltas' text.
    thread_id, run_id = "thread_split", "run_split"
    events = golden_events(run_id, thread_id)
    deltas = [i for i, (name, _) in enumerate(events) if name == "thread.message.delta"]
    half = len(KEY) // 2
    events = quoting(events, deltas[0], f"key {KEY[:half]}")
    events = quoting(events, deltas[1], f"{KEY[half:]} end")
    opened = asyncio.Event()
    async with HostileUpstream() as upstream:
        upstream.script(
            thread_id,
            Script(
                [
                    Send(sse(events[: deltas[1] + 1])),
                    Gate(opened, keepalive=None),
                    Send(sse(events[deltas[1] + 1 :])),
                ]
            ),
        )
        runcast = await start_runcast(upstream.url)
        session = runcast.session
        creator = await session.post(
            f"{runcast.url}/v1/threads/{thread_id}/runs", json=RUN_BODY, headers=CALLER
        )
        assert creator.status == 200, await creator.text()
        head = b""
        async with asyncio.timeout(WAIT):
            while b" end" not in head:  # the second half has been published
                head += await creator.content.readany()
        async with session.get(f"{runcast.url}/streams/runs/{run_id}/snapshot") as response:
            snapshot = await response.read()
        async with session.get(f"{runcast.url}/streams/runs/{run_id}?snapshot=1") as joined:
            first = await joined.content.readuntil(b"\n\n")
        opened.set()
        await read_until_done(creator)
    assert KEY.encode() not in snapshot and KEY.encode() not in first
    text = orjson.loads(snapshot)["snapshot"]["messages"][0]["content"]
    assert f"key {MASKED} end" in "".join(part["text"]["value"] for part in text)
