"""HTTP/1.0 answers of unknown length end with their connection, whatever handler wrote them:
a client asking for keep-alive read the next pipelined answer as part of a stream."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web
from http_helpers import WAIT, Gateway, StartGateway, raw_connection, served_upstream

pytestmark = pytest.mark.asyncio

NEXT = b"GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"


def request(method: str, target: str, body: object = None) -> bytes:
    data = b"" if body is None else orjson.dumps(body)
    head = (
        f"{method} {target} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n"
        "Authorization: Bearer sk-caller\r\n"
    )
    if data:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return (head + "\r\n").encode() + data


async def pipelined(gateway: Gateway, first: bytes) -> bytes:
    """``first`` and a ``/healthz`` after it on one HTTP/1.0 keep-alive connection; all that
    comes back until the server closes it."""
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(first + NEXT)
        async with asyncio.timeout(WAIT):
            return await reader.read()
    finally:
        writer.close()


def only_answer(raw: bytes, marker: bytes) -> bytes:
    """The single answer in ``raw``: an unframed 200 whose body holds ``marker``, with nothing
    after it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), raw[:300]
    assert b"content-length" not in head.lower() and b"keep-alive" not in head.lower()
    assert marker in body
    assert b"HTTP/1.0 " not in body, "the next answer was written inside the stream's body"
    return body


async def test_a_creator_stream_ends_with_its_connection(gateway: Gateway) -> None:
    chat = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    raw = await pipelined(gateway, request("POST", "/v1/chat/completions", chat))
    assert only_answer(raw, b"data: [DONE]")


async def test_a_proxied_stream_ends_with_its_connection(start_gateway: StartGateway) -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\ndata: two\n\n")
        await response.write_eof()
        return response

    upstream = web.Application()
    upstream.router.add_get("/v1/events", events)
    async with served_upstream(upstream) as url:
        gateway = await start_gateway(upstream_url=url)
        raw = await pipelined(gateway, request("GET", "/v1/events"))
    assert only_answer(raw, b"data: two\n\n")


async def test_a_retrieve_stream_ends_with_its_connection(gateway: Gateway) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.v1}/responses",
            json={"model": "gpt-5", "input": "hi", "stream": True},
            headers={"Authorization": "Bearer sk-caller"},
        ) as created,
    ):
        response_id = created.headers["runcast-response-id"]
        await created.read()
    raw = await pipelined(gateway, request("GET", f"/v1/responses/{response_id}?stream=true"))
    assert only_answer(raw, b"response.completed")


async def test_answers_of_known_length_keep_the_connection(gateway: Gateway) -> None:
    reader, writer = await raw_connection(gateway.url)
    try:
        writer.write(NEXT + NEXT)
        async with asyncio.timeout(WAIT):
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.0 200") and b"Connection: keep-alive" in head
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
    finally:
        writer.close()
