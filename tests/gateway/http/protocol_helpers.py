"""Subscribers of the Responses and Chat channels: record SSE or WebSocket events until a
predicate says the stream is over (a terminal event, ``[DONE]``, a runcast notice) or EOF."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from http_helpers import Received, Subscriber

from parsers.sse import SSEDecoder

TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})


def _ends_response(event: Received) -> bool:
    return event.event in TERMINAL or event.event.startswith("runcast.")


async def read_sse(
    response: aiohttp.ClientResponse, until: Callable[[Received], bool] = _ends_response
) -> Subscriber:
    """Record SSE events from ``response`` until one satisfies ``until`` or EOF; a response left
    before its end is released (its connection closed), as a client would."""
    sub = Subscriber()
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for sse in decoder.feed(chunk):
            sub.events.append(Received.from_sse(sse))
            if until(sub.events[-1]):
                response.release()
                return sub
    sub.ended = True
    return sub


async def read_ws(
    ws: aiohttp.ClientWebSocketResponse, until: Callable[[Received], bool] = _ends_response
) -> Subscriber:
    sub = Subscriber()
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        sub.events.append(Received.from_ws(msg.data))
        if until(sub.events[-1]):
            return sub
    sub.ended = True
    return sub


async def subscribe_sse(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, asyncio.Task[Subscriber]]:
    response = await session.get(url, **kwargs)
    assert response.status == 200, await response.text()
    return response, asyncio.create_task(read_sse(response))
