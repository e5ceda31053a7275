"""Streamed-call bodies that runcast cannot read: a 400 ``invalid_body`` before anything goes
upstream (``gateway/http/routes.py``, ``gateway.upstream.body.json_object``).

The relay reads a streamed call's body with orjson (``with_stream_flag``, the tool chains) and
writes tool outputs back with it. A body it could not read (nested past ``MAX_NESTING``, invalid
UTF-8, a number past a double; an integer past 64 bits in tool outputs) is refused before a relay
starts, with no error logged; a body that is not a streamed call still passes through as is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import Gateway, StartGateway, served_upstream

from gateway.upstream.body import MAX_NESTING

SUBMIT = "/v1/threads/thread_abc/runs/run_abc/submit_tool_outputs"
CREATORS = (
    "/v1/threads/runs",
    "/v1/threads/thread_abc/runs",
    SUBMIT,
    "/v1/responses",
    "/v1/chat/completions",
)
HEADERS = {"Authorization": "Bearer sk-caller", "Content-Type": "application/json"}


def nested(levels: int) -> bytes:
    return b'{"stream":true,"metadata":' + b"[" * levels + b"]" * levels + b"}"


def streamed(member: bytes) -> bytes:
    """A streamed call that every creator path takes but for ``member``."""
    return b'{"assistant_id":"asst_x","stream":true,"tool_outputs":[],' + member + b"}"


UNREADABLE = {
    # The stream flag's msgspec view recursed on Python's stack: RecursionError, a 500.
    "nested_100000": nested(100_000),
    # Read by orjson (up to 1024 levels), not written back (254); msgspec's limit is the stack.
    "nested_past_limit": nested(MAX_NESTING),
    # The view skips these members; the relay's orjson refused them (a 502, a relay "shutdown").
    "invalid_utf8": streamed(b'"instructions":"\xff\xfe"'),
    "huge_int": streamed(b'"max_prompt_tokens":1' + b"0" * 400),
    "huge_float": streamed(b'"temperature":1e999'),
}


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An upstream that records every body it gets and refuses it."""
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        error = {"message": "seen upstream", "type": "invalid_request_error", "code": "upstream"}
        return web.json_response({"error": error}, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with served_upstream(app) as url:
        yield url, bodies


async def refused(session: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, str]:
    async with session.post(url, data=body, headers=HEADERS) as response:
        answer = await response.json()
        assert response.status == 400, answer
    error: dict[str, str] = answer["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_body", error
    return error


def nothing_started(gateway: Gateway, seen: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    assert seen == [], "a refused body reached the upstream"
    assert gateway.relays.statistics().started == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.asyncio
@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_unreadable_streamed_bodies_are_refused_before_the_upstream(
    start_gateway: StartGateway,
    upstream: tuple[str, list[bytes]],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    url, seen = upstream
    gateway = await start_gateway(upstream_url=url)
    for path in CREATORS:
        error = await refused(session, gateway.url + path, body)
        assert error["message"].startswith("request body "), (path, error)
    nothing_started(gateway, seen, caplog)


@pytest.mark.asyncio
async def test_tool_outputs_past_64_bit_integers_are_refused(
    start_gateway: StartGateway,
    upstream: tuple[str, list[bytes]],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, seen = upstream
    gateway = await start_gateway(upstream_url=url)
    # orjson reads this integer as a float, msgspec as an int that orjson cannot write back.
    output = b'{"tool_call_id":"call_1","output":"x","n":1' + b"0" * 25 + b"}"
    body = b'{"stream":true,"tool_outputs":[' + output + b"]}"
    error = await refused(session, gateway.url + SUBMIT, body)
    assert error["param"] == "tool_outputs"
    nothing_started(gateway, seen, caplog)


@pytest.mark.asyncio
async def test_what_runcast_can_read_goes_upstream_as_is(
    start_gateway: StartGateway, upstream: tuple[str, list[bytes]], session: aiohttp.ClientSession
) -> None:
    url, seen = upstream
    gateway = await start_gateway(upstream_url=url)
    bodies = [
        nested(MAX_NESTING - 1),  # a streamed call nested MAX_NESTING levels deep: relayed
        # Not streamed calls: passed through, for the upstream to judge (routes.py).
        b'{"stream":false,"instructions":"\xff\xfe"}',
        nested(MAX_NESTING).replace(b"true", b"false", 1),
        b'{"stream":true',
    ]
    for body in bodies:
        async with session.post(f"{gateway.url}/v1/responses", data=body, headers=HEADERS) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "upstream"
    assert seen == bodies
