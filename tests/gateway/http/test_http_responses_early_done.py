"""A ``data: [DONE]`` before a Responses stream's terminal event is a cut, not an end.

LiteLLM-style servers send ``[DONE]`` after ``response.completed``; one that sends it earlier
(a proxy ending the body on an upstream failure) has not finished the response. runcast used to
relay it and count the stream as ended: the SDK stopped at it, the channel's snapshot stayed
``in_progress`` for good, and nothing was polled. Now it is handled like any cut: not relayed,
the stored response is polled to its end (``runcast.recovered``, then ``response.completed``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import Gateway, StartGateway, sdk_client, served_upstream

from parsers.sse import SSEDecoder

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "responses" / "A-text.sse"
DELTAS_BEFORE_DONE = 3


def _golden() -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    return [(e.event, e.data_bytes) for e in decoder.feed(GOLDEN.read_bytes()) + decoder.close()]


def _early_done_body() -> bytes:
    """The golden stream up to its ``DELTAS_BEFORE_DONE``-th delta, then ``[DONE]``."""
    body, deltas = b"", 0
    for name, data in _golden():
        body += b"event: %s\ndata: %s\n\n" % (name.encode(), data)
        deltas += name == "response.output_text.delta"
        if deltas == DELTAS_BEFORE_DONE:
            return body + b"data: [DONE]\n\n"
    raise AssertionError("the golden stream has too few deltas")


def _final_response() -> dict[str, Any]:
    completed = orjson.loads(_golden()[-1][1])
    assert completed["type"] == "response.completed"
    response: dict[str, Any] = completed["response"]
    return response


@pytest_asyncio.fixture
async def upstream_polls(start_gateway: StartGateway) -> AsyncIterator[tuple[Gateway, list[str]]]:
    """A gateway in front of that upstream, and the response ids the upstream was polled for."""
    polls: list[str] = []

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_early_done_body())
        return response

    async def retrieve(request: web.Request) -> web.Response:
        polls.append(request.match_info["id"])
        return web.json_response(_final_response())

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{id}", retrieve)
    async with served_upstream(app) as url:
        yield await start_gateway(upstream_url=url), polls


@pytest.mark.asyncio
async def test_an_early_done_is_a_cut_and_the_stored_response_is_polled_to_its_end(
    upstream_polls: tuple[Gateway, list[str]], session: aiohttp.ClientSession
) -> None:
    gateway, polls = upstream_polls
    sdk = sdk_client(gateway)
    try:
        stream = await sdk.responses.create(model="gpt-4o", input="Hi", stream=True)
        seen = [event async for event in stream]
    finally:
        await sdk.close()
    final = _final_response()
    assert [e.type for e in seen].count("response.output_text.delta") == DELTAS_BEFORE_DONE
    assert seen[-2].type == "runcast.recovered"
    assert seen[-1].type == "response.completed"
    assert seen[-1].response.output_text == final["output"][0]["content"][0]["text"]
    assert polls == [final["id"]]

    own = f"{gateway.url}/streams/responses/{final['id']}"
    async with session.get(own + "?since=0") as response:
        names = [e.event for e in SSEDecoder().feed(await response.read())]
    assert "done" not in names and names[-1] == "response.completed"  # `[DONE]` not relayed
    async with session.get(own + "/snapshot") as response:
        snapshot = (await response.json())["snapshot"]
    assert snapshot["response"]["status"] == "completed"
