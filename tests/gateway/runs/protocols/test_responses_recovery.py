"""Reconciling a cut Responses stream against a real server answering ``GET /v1/responses/{id}``:
polled until terminal, the notice and the synthesized last word, the answers that end it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from gateway.runs.protocols import ResponseRecovery, stored
from gateway.upstream import UpstreamClient, UpstreamSettings
from parsers.responses import ResponseCompletedEvent, ResponseFailedEvent, ResponseIncompleteEvent

RESPONSE_ID = "resp_abc"


def response(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": RESPONSE_ID, "object": "response", "status": status, "output": [], **extra}


class Scripted:
    """Answers ``GET /v1/responses/{id}`` with ``answers`` in turn (the last one repeats)."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        assert request.match_info["id"] == RESPONSE_ID
        self.hits += 1
        code, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        # Pretty-printed with a trailing newline: the relayed bytes must still be one event.
        return web.Response(
            body=orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n",
            status=code,
            content_type="application/json",
        )


Serve = Callable[[Scripted], Awaitable[UpstreamClient]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []
    clients: list[UpstreamClient] = []

    async def start(script: Scripted) -> UpstreamClient:
        app = web.Application()
        app.router.add_get("/v1/responses/{id}", script.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        client = UpstreamClient(UpstreamSettings(base_url=f"http://127.0.0.1:{port}/v1"))
        await client.start()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "typed"),
    [
        ("completed", ResponseCompletedEvent),
        ("failed", ResponseFailedEvent),
        ("incomplete", ResponseIncompleteEvent),
    ],
)
async def test_polled_until_terminal_then_notice_and_last_word(
    serve: Serve, status: str, typed: type
) -> None:
    final = response(status, output=[{"type": "message", "id": "msg_1", "content": []}])
    script = Scripted((200, response("queued")), (200, response("in_progress")), (200, final))
    recovery = ResponseRecovery(await serve(script), within=5.0, interval=0.01)
    found = await recovery(RESPONSE_ID, 41, "connection_lost")
    assert found is not None and found.ended and found.status == status
    assert script.hits == 3
    notice, end = found.events
    assert notice.name == "runcast.recovered"
    assert orjson.loads(notice.data) == {
        "type": "runcast.recovered",
        "kind": "response",
        "id": RESPONSE_ID,
        "reason": "connection_lost",
        "status": status,
        "cursor": 41,
    }
    assert end.name == f"response.{status}"
    assert orjson.loads(end.data) == {
        "type": f"response.{status}",
        "sequence_number": 42,
        "response": final,
        "runcast_reconciled": True,
    }
    assert isinstance(end.decoded, typed) and end.decoded.sequence_number == 42


@pytest.mark.asyncio
async def test_a_cancelled_response_has_no_last_word(serve: Serve) -> None:
    recovery = ResponseRecovery(await serve(Scripted((200, response("cancelled")))), within=5.0)
    found = await recovery(RESPONSE_ID, 3, "http_400")
    assert found is not None and not found.ended and found.status == "cancelled"
    assert [event.name for event in found.events] == ["runcast.recovered"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": {"message": "Response with id 'resp_abc' not found."}}),
        (200, {"id": "resp_other", "status": "completed"}),
        (200, {"id": RESPONSE_ID}),
    ],
    ids=["not-found", "another-object", "no-status"],
)
async def test_answers_that_end_the_recovery_at_once(
    serve: Serve, answer: tuple[int, dict[str, Any]]
) -> None:
    script = Scripted(answer)
    recovery = ResponseRecovery(await serve(script), within=5.0, interval=0.01)
    assert await recovery(RESPONSE_ID, 3, "connection_lost") is None
    assert script.hits == 1


@pytest.mark.asyncio
async def test_a_response_still_running_at_the_deadline_is_given_up(serve: Serve) -> None:
    script = Scripted((200, response("in_progress")))
    recovery = ResponseRecovery(await serve(script), within=0.3, interval=0.05)
    assert await recovery(RESPONSE_ID, 3, "connection_lost") is None
    assert 2 <= script.hits <= 8


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model": "gpt-5"}', True),
        (b'{"store": true}', True),
        (b'{"store": null}', True),
        (b'{"store": false}', False),
        (b"[1]", False),
        (b"not json", False),
    ],
)
def test_stored_unless_the_request_says_store_false(body: bytes, expected: bool) -> None:
    assert stored(body) is expected
