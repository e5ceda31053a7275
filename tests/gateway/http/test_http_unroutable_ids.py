"""Ids runcast cannot route never reach a response header: a caller's conversation id that is no
id is a 400, and an upstream id that is none (CR/LF, spaces, too long) leaves the creator's
stream without its id and token headers instead of failing it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import StartGateway, served_upstream

from parsers.sse import encode_sse

HEADERS = {"Authorization": "Bearer sk-caller"}


def response_events(response_id: str) -> bytes:
    response = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
    frames = [
        (
            "response.created",
            {"type": "response.created", "sequence_number": 0, "response": response},
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 1,
                "response": {**response, "status": "completed"},
            },
        ),
    ]
    return b"".join(encode_sse(orjson.dumps(data), event=name) for name, data in frames)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """An upstream that streams a response whose id is the next one of ``ids``."""
    ids: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(response_events(ids.pop(0)))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", handle)
    async with served_upstream(app) as url:
        yield url, ids


@pytest.mark.asyncio
@pytest.mark.parametrize("response_id", ["resp_a\r\nSet-Cookie: x=1", "resp a", "r" * 129])
async def test_an_upstream_id_runcast_cannot_route_is_not_put_in_headers(
    start_gateway: StartGateway,
    upstream: tuple[str, list[str]],
    caplog: pytest.LogCaptureFixture,
    response_id: str,
) -> None:
    url, ids = upstream
    gateway = await start_gateway(upstream_url=url)
    ids.append(response_id)
    body = {"model": "gpt-5", "input": "Hi", "stream": True}
    with caplog.at_level(logging.WARNING):
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{gateway.v1}/responses", json=body, headers=HEADERS) as response,
        ):
            assert response.status == 200
            received = await response.read()
            head = dict(response.headers)
    assert b"response.completed" in received
    assert "runcast-response-id" not in head and "runcast-subscribe-token" not in head
    assert "Set-Cookie" not in head
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Said once, in a line of its own (the id quoted, never its raw line breaks).
    (said,) = [r.getMessage() for r in caplog.records if "no subscriber URL" in r.getMessage()]
    assert "\n" not in said and repr(response_id[:64]) in said


NOT_IDS = [
    ("conversation", "conv_a\nb"),
    ("conversation", "conv a"),
    ("conversation", {"id": "c" * 129}),
    ("conversation", ".."),
    # /streams/channels/. is /streams/channels/ to every client that normalises paths.
    ("Runcast-Channel", "."),
    ("Runcast-Channel", ".."),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("param", "value"), NOT_IDS)
async def test_a_caller_id_that_is_no_id_is_a_400_before_the_upstream(
    start_gateway: StartGateway, upstream: tuple[str, list[str]], param: str, value: Any
) -> None:
    url, ids = upstream
    gateway = await start_gateway(upstream_url=url)
    ids.append("resp_ok")
    body: dict[str, Any] = {"model": "gpt-5", "input": "Hi", "stream": True}
    headers = dict(HEADERS)
    if param == "conversation":
        body["conversation"] = value
    else:
        headers[param] = value
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway.v1}/responses", json=body, headers=headers) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == param
    # A code that names the fault, and a message that says what a name may be.
    assert error["code"] == "invalid_channel"
    assert "1-128 letters, digits, '_', '-' and '.'" in error["message"]
    assert ids == ["resp_ok"]  # nothing went upstream
