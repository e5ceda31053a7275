"""Wire deviation switches: per request (metadata, header) and server-wide (settings/flags)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from mock_helpers import StartMock
from openai import AsyncOpenAI
from proto_helpers import (
    FLAT_TIME,
    FLAT_WEATHER,
    chat_events,
    nested,
    payloads,
    post_raw,
    reduce_chat,
    reduce_responses,
    response_events,
)

from parsers.responses import DoneEvent, KeepaliveEvent, ResponseCompletedEvent


def responses_body(**metadata: str) -> dict[str, Any]:
    return {"model": "gpt-5", "input": "Hi", "stream": True, "metadata": metadata}


def chat_body(**metadata: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "tools": [nested(FLAT_WEATHER), nested(FLAT_TIME)],
        "metadata": {"mock_scenario": "parallel_tool_calls", **metadata},
    }


async def sdk_final_text(base_url: str, **metadata: str) -> str:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    try:
        async with client.responses.stream(model="gpt-5", input="Hi", metadata=metadata) as s:
            final = await s.get_final_response()
    finally:
        await client.close()
    return final.output_text


@pytest.mark.asyncio
async def test_default_wire_is_openai(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    _, raw = await post_raw(session, server.base_url + "/responses", responses_body())
    assert raw.startswith(b"event: response.created\ndata: ")
    assert b"keepalive" not in raw and b"[DONE]" not in raw
    assert b'"obfuscation":"' in raw
    _, raw = await post_raw(session, server.base_url + "/chat/completions", chat_body())
    assert b'"index":1,"id":"call_' in raw and raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("where", ["metadata", "header", "server"])
@pytest.mark.asyncio
async def test_responses_keepalive_data_only_and_done(
    start_mock: StartMock, session: aiohttp.ClientSession, where: str
) -> None:
    switches = {"mock_keepalive_every": "2", "mock_data_only": "true", "mock_done": "true"}
    settings: dict[str, Any] = {}
    headers: dict[str, str] = {}
    body = responses_body()
    if where == "server":
        settings = {"keepalive_every": 2, "data_only": True, "responses_done": True}
    elif where == "header":
        headers = {"X-Mock-Keepalive-Every": "2", "X-Mock-Data-Only": "1", "X-Mock-Done": "yes"}
    else:
        body = responses_body(**switches)
    server = await start_mock(**settings)
    _, raw = await post_raw(session, server.base_url + "/responses", body, headers)
    assert b"event:" not in raw and raw.endswith(b"data: [DONE]\n\n")
    events = response_events(raw)
    keepalives = [e for e in events if isinstance(e, KeepaliveEvent)]
    assert len(keepalives) == 6 // 2  # 6 deltas in the test settings
    assert isinstance(events[-1], DoneEvent) and isinstance(events[-2], ResponseCompletedEvent)
    numbered = [e.sequence_number for e in events[:-1]]  # type: ignore[union-attr]
    assert numbered == list(range(len(numbered)))  # keepalives take sequence numbers
    snapshot = reduce_responses(events)
    assert snapshot["done"] and snapshot["response"]["status"] == "completed"
    # The official SDK's helper goes through all three deviations.
    text = await sdk_final_text(server.base_url, **(switches if where == "metadata" else {}))
    assert text == payloads(raw)[-1]["response"]["output"][0]["content"][0]["text"]


@pytest.mark.asyncio
async def test_obfuscation_can_be_turned_off(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    body = {**responses_body(), "stream_options": {"include_obfuscation": False}}
    _, raw = await post_raw(session, server.base_url + "/responses", body)
    assert b"obfuscation" not in raw


@pytest.mark.parametrize("where", ["metadata", "server"])
@pytest.mark.asyncio
async def test_chat_tool_deltas_without_index(
    start_mock: StartMock, session: aiohttp.ClientSession, where: str
) -> None:
    server = await start_mock(**({"chat_no_index": True} if where == "server" else {}))
    body = chat_body(**({"mock_no_index": "true"} if where == "metadata" else {}))
    _, raw = await post_raw(session, server.base_url + "/chat/completions", body)
    calls = [
        call
        for p in payloads(raw)
        if p["choices"]
        for call in p["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert calls and all("index" not in call for call in calls)
    assert sum("id" in call for call in calls) == 2  # the id on each call's first delta only
    completion = reduce_chat(chat_events(raw))["completion"]
    rebuilt = completion["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in rebuilt] == ["get_weather", "get_time"]
    joined = [
        "".join(c["function"].get("arguments", "") for c in calls[i * 4 : i * 4 + 4])
        for i in (0, 1)
    ]
    assert [c["function"]["arguments"] for c in rebuilt] == joined


@pytest.mark.parametrize("value", ["maybe", "-1", "x", "+3", "1_0", "\uff13"])
@pytest.mark.asyncio
async def test_malformed_switch_is_a_400(
    start_mock: StartMock, session: aiohttp.ClientSession, value: str
) -> None:
    server = await start_mock()
    key = "mock_data_only" if value == "maybe" else "mock_keepalive_every"
    status, raw = await post_raw(
        session, server.base_url + "/responses", responses_body(**{key: value})
    )
    assert status == 400 and key.encode() in raw and b'"param":"metadata"' in raw


@pytest.mark.parametrize("path", ["/responses", "/chat/completions", "/threads/runs"])
@pytest.mark.asyncio
async def test_a_body_nested_past_the_stack_is_a_400(
    start_mock: StartMock, session: aiohttp.ClientSession, path: str
) -> None:
    # 2 KB of brackets: the request journal's decode recursed past Python's stack, and the
    # simulator answered aiohttp's plain-text 500.
    server = await start_mock()
    deep = b'{"model":"gpt-4o","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with session.post(
        server.base_url + path,
        data=deep,
        headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/threads/thread_x/messages?limit=" + "9" * 5000, None),
        ("GET", "/threads/thread_x/runs?order=" + "a" * 5000, None),
        ("GET", "/responses/resp_" + "r" * 5000, None),
        ("POST", "/responses", responses_body(mock_keepalive_every="7" * 20_000 + "x")),
        ("POST", "/threads/runs", {"assistant_id": "a", "metadata": {"mock_scenario": "s" * 500}}),
    ],
)
@pytest.mark.asyncio
async def test_a_long_bad_value_is_quoted_back_clipped(
    start_mock: StartMock,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    # The simulator quoted a caller's whole value back in its 400 or 404: a megabyte of
    # `limit` came back as a megabyte of error message.
    server = await start_mock()
    async with session.request(
        method,
        server.base_url + path,
        json=body,
        headers={"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"},
    ) as response:
        assert response.status in (400, 404)
        message = (await response.json())["error"]["message"]
    assert len(message) < 200, message
    assert "..." in message
