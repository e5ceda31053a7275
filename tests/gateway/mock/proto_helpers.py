"""Helpers for the Responses and Chat simulator tests: raw streams through runcast's parsers."""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp

from parsers.chat import ChatAccumulator, ChatCompletionChunk, ChatStreamEvent, decode_chunk
from parsers.responses import ResponseAccumulator, ResponseStreamEvent, UnknownEvent, decode_event
from parsers.sse import ServerSentEvent, SSEDecoder

AUTH = {"Authorization": "Bearer sk-test"}

FLAT_WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
}
FLAT_TIME = {
    "type": "function",
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}


def nested(tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses (flat) function tool in the Chat Completions (nested) shape."""
    function = {k: v for k, v in tool.items() if k != "type"}
    return {"type": "function", "function": function}


def sse_events(raw: bytes, seed: int = 0) -> list[ServerSentEvent]:
    """Decode ``raw`` fed in random chunks; the stream must end on an event boundary."""
    rng = random.Random(seed)
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    pos = 0
    while pos < len(raw):
        size = rng.randint(1, 600)
        events.extend(decoder.feed(raw[pos : pos + size]))
        pos += size
    assert decoder.close() == [] and not decoder.truncated
    return events


def response_events(raw: bytes, seed: int = 0) -> list[ResponseStreamEvent]:
    events = [decode_event(sse) for sse in sse_events(raw, seed)]
    unknown = [e for e in events if isinstance(e, UnknownEvent)]
    assert not unknown, unknown
    return events


def chat_events(raw: bytes, seed: int = 0) -> list[ChatStreamEvent]:
    return [decode_chunk(sse) for sse in sse_events(raw, seed)]


def payloads(raw: bytes) -> list[dict[str, Any]]:
    """JSON payloads of the ``data:`` lines (``[DONE]`` left out)."""
    out = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def reduce_responses(events: list[ResponseStreamEvent]) -> dict[str, Any]:
    acc = ResponseAccumulator()
    for event in events:
        acc.apply(event)
    return acc.snapshot()


def reduce_chat(events: list[ChatStreamEvent]) -> dict[str, Any]:
    acc = ChatAccumulator()
    for event in events:
        acc.apply(event)
    return acc.snapshot()


def chunks(events: list[ChatStreamEvent]) -> list[ChatCompletionChunk]:
    return [e for e in events if isinstance(e, ChatCompletionChunk)]


async def post_raw(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """POST ``body``; the status and the whole body, or what arrived before a cut."""
    async with session.post(url, json=body, headers={**AUTH, **(headers or {})}) as resp:
        data = bytearray()
        try:
            async for chunk in resp.content.iter_any():
                data += chunk
        except aiohttp.ClientPayloadError:
            pass  # the connection was cut mid-body (the drop scenarios)
        return resp.status, bytes(data)


async def get_raw(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url, headers=AUTH) as resp:
        return resp.status, await resp.read()
