"""A scripted upstream Assistants API on 127.0.0.1 that misbehaves on demand.

A real aiohttp server poses as the upstream. Each thread id gets a :class:`Script` that decides
the answer to ``POST /v1/threads/{thread_id}/runs``: its status, its content type and the steps
of its body (bytes to send, a gate to wait at while SSE keep-alive comments flow, a stall, an
abrupt TCP cut). ``GET /v1/threads/{thread_id}/runs/{run_id}`` answers with the next status of
the run's poll script, so the gateway's recovery after a broken stream can be followed. A body
that is not JSON gets the upstream's own 400, as OpenAI answers it.

Good runs are the golden stream ``tests/data/assistants/A-text.sse`` with the run and thread ids
of the test substituted, so two runs on one gateway never share a channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
from aiohttp import web

from parsers.sse import SSEDecoder

__all__ = [
    "Cut",
    "Gate",
    "HostileUpstream",
    "Script",
    "Send",
    "Stall",
    "Step",
    "golden_events",
    "run_json",
    "sse_body",
]

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "assistants" / "A-text.sse"
GOLDEN_RUN_ID = "run_7Lm"
GOLDEN_THREAD_ID = "thread_9Qx"
POLL_AFTER_MS = "20"

Event = tuple[str, bytes]


def golden_events(run_id: str, thread_id: str) -> list[Event]:
    """The golden run's (name, data) pairs, carrying ``run_id`` and ``thread_id``."""
    raw = GOLDEN.read_bytes()
    raw = raw.replace(GOLDEN_RUN_ID.encode(), run_id.encode())
    raw = raw.replace(GOLDEN_THREAD_ID.encode(), thread_id.encode())
    decoder = SSEDecoder()
    return [(e.event, e.data_bytes) for e in decoder.feed(raw) + decoder.close()]


def sse_body(events: Sequence[Event], *, newline: bytes = b"\n") -> bytes:
    """``events`` as an SSE body, every line ended by ``newline``."""
    return b"".join(
        b"event: %s%sdata: %s%s%s" % (name.encode(), newline, data, newline, newline)
        for name, data in events
    )


def run_json(run_id: str, thread_id: str, status: str) -> bytes:
    """A complete Run object (the golden one) with the given ids and status."""
    created = golden_events(run_id, thread_id)[0][1]
    run = orjson.loads(created)
    run["status"] = status
    return orjson.dumps(run)


@dataclasses.dataclass(frozen=True)
class Send:
    """Write these bytes."""

    data: bytes


@dataclasses.dataclass(frozen=True)
class Gate:
    """Wait until ``opened`` is set, sending an SSE comment every ``keepalive`` seconds (None:
    silently, so the bytes on either side of the gate stay one piece of the body)."""

    opened: asyncio.Event
    keepalive: float | None = 0.05


@dataclasses.dataclass(frozen=True)
class Stall:
    """Send nothing more and hold the connection until the client leaves or the server stops."""


@dataclasses.dataclass(frozen=True)
class Cut:
    """Drop the TCP connection here: a reset (``rst``) or a bare close without the body's end."""

    rst: bool = True


Step = Send | Gate | Stall | Cut


@dataclasses.dataclass(frozen=True)
class Script:
    """How ``POST /v1/threads/{thread_id}/runs`` is answered for one thread."""

    steps: Sequence[Step]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: bytes


_BAD_JSON = orjson.dumps(
    {
        "error": {
            "message": "We could not parse the JSON body of your request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
)


class HostileUpstream:
    """The server; ``async with HostileUpstream() as upstream``, then ``upstream.url``."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.poll_answers: dict[str, list[str | bytes]] = {}
        self.polled: dict[str, list[bytes]] = {}
        self.requests: list[Recorded] = []
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/threads/{thread_id}/runs", self._create_run)
        app.router.add_get("/v1/threads/{thread_id}/runs/{run_id}", self._retrieve_run)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # Cancelled handlers: a stalled answer ends as soon as the gateway hangs up.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        self.url = ""

    async def __aenter__(self) -> HostileUpstream:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()
        await self._runner.cleanup()

    def script(self, thread_id: str, script: Script) -> None:
        self.scripts[thread_id] = script

    def poll(self, run_id: str, *answers: str | bytes) -> None:
        """Answer polls of ``run_id`` in turn (the last answer repeats): a run status gets the
        Run in that status, bytes are sent as they are, labelled ``text/html``."""
        self.poll_answers[run_id] = list(answers)

    def posted(self, thread_id: str) -> list[bytes]:
        path = f"/v1/threads/{thread_id}/runs"
        return [r.body for r in self.requests if r.method == "POST" and r.path == path]

    async def _create_run(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path, body))
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.Response(status=400, body=_BAD_JSON, content_type="application/json")
        script = self.scripts.get(request.match_info["thread_id"])
        if script is None:
            return await self._not_found(request)
        response = web.StreamResponse(
            status=script.status, headers={"Content-Type": script.content_type}
        )
        response.headers["x-request-id"] = "req_hostile"
        response.headers.update(script.headers)
        await response.prepare(request)
        try:
            for step in script.steps:
                if not await self._play(step, request, response):
                    return response
            await response.write_eof()
        except ConnectionError:
            pass  # the gateway hung up first: nothing left to tell it
        return response

    async def _play(self, step: Step, request: web.Request, response: web.StreamResponse) -> bool:
        if isinstance(step, Send):
            await response.write(step.data)
        elif isinstance(step, Gate) and step.keepalive is None:
            await step.opened.wait()
        elif isinstance(step, Gate):
            while not step.opened.is_set():
                await response.write(b": keep-alive\n\n")
                try:
                    async with asyncio.timeout(step.keepalive):
                        await step.opened.wait()
                except TimeoutError:
                    pass
        elif isinstance(step, Stall):
            await self._stopping.wait()
            return False
        else:
            transport = request.transport
            assert transport is not None
            if step.rst:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return False
        return True

    async def _retrieve_run(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.method, request.path, b""))
        run_id = request.match_info["run_id"]
        answers = self.poll_answers.get(run_id)
        if not answers:
            return await self._not_found(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        headers = {"openai-poll-after-ms": POLL_AFTER_MS}
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type="text/html", headers=headers)
        body = run_json(run_id, request.match_info["thread_id"], answer)
        self.polled.setdefault(run_id, []).append(body)
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def _not_found(self, request: web.Request) -> web.Response:
        error = {"message": f"No such route {request.path}", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=404)
