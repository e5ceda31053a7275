"""An upstream that reuses stream ids never merges two callers' streams into one channel.

Ollama's OpenAI layer draws chat completion ids from 1,000 values, so two completions within a
channel's retention can share one. The second stream used to go on in the first one's channel:
the first caller's subscribe token then read the second caller's answer, and the snapshot joined
both. Now the later stream has no channel of its own (its creator still gets it whole, and no
id or token for a channel that is not its own), and the first stream's channel is left as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import Gateway, StartGateway, sdk_client, served_upstream

from parsers.sse import SSEDecoder

REUSED_CHAT_ID = "chatcmpl-42"
REUSED_RESPONSE_ID = "resp_fixed"
REUSED_RUN_ID = "run_fixed"


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": REUSED_CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _responses_body(text: str) -> bytes:
    response = {"id": REUSED_RESPONSE_ID, "object": "response", "status": "in_progress"}
    done = {**response, "status": "completed", "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        },
        {"type": "response.completed", "sequence_number": 2, "response": done},
    ]
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (str(e["type"]).encode(), orjson.dumps(e)) for e in events
    )


async def _chat(request: web.Request) -> web.StreamResponse:
    """Echoes the caller's message as its answer, always under the same completion id."""
    said = (await request.json())["messages"][-1]["content"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk(said) + _chunk(None, "stop") + b"data: [DONE]\n\n")
    return response


async def _responses(request: web.Request) -> web.StreamResponse:
    said = (await request.json())["input"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_responses_body(said))
    return response


async def _retrieve(request: web.Request) -> web.Response:
    """The caller may read the response (runcast asks before answering from its own log)."""
    return web.json_response({"id": request.match_info["id"], "object": "response"})


async def _run(request: web.Request) -> web.StreamResponse:
    """Every run gets the same id; its text names its thread."""
    thread_id = request.match_info["thread_id"]
    run = {
        "id": REUSED_RUN_ID,
        "object": "thread.run",
        "thread_id": thread_id,
        "assistant_id": "asst_1",
        "status": "in_progress",
        "created_at": 1,
    }
    message = {
        "id": f"msg_{thread_id}",
        "object": "thread.message.delta",
        "delta": {
            "content": [{"index": 0, "type": "text", "text": {"value": f"secret of {thread_id}"}}]
        },
    }
    events = [
        ("thread.run.created", {**run, "status": "queued"}),
        ("thread.message.delta", message),
        ("thread.run.completed", {**run, "status": "completed"}),
    ]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(
        b"".join(
            b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))
            for name, data in events
        )
        + b"event: done\ndata: [DONE]\n\n"
    )
    return response


def _upstream() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_get("/v1/responses/{id}", _retrieve)
    app.router.add_post("/v1/threads/{thread_id}/runs", _run)
    return app


@pytest_asyncio.fixture
async def gateway(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with served_upstream(_upstream()) as url:
        yield await start_gateway(upstream_url=url)


@pytest_asyncio.fixture
async def token_gateway(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with served_upstream(_upstream()) as url:
        yield await start_gateway(upstream_url=url, subscribe_auth="token")


async def _replay(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url + "?since=0") as response:
        assert response.status == 200
        return b"".join(e.data_bytes for e in SSEDecoder().feed(await response.read()))


@pytest.mark.asyncio
async def test_a_reused_chat_id_gets_no_channel_and_leaves_the_first_ones_alone(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    sdk = sdk_client(gateway)
    answers = {}
    heads = {}
    try:
        for caller in ("secret-of-A", "secret-of-B"):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": caller}], stream=True
            )
            heads[caller] = raw.headers
            chunks = [c async for c in raw.parse()]
            answers[caller] = "".join(c.choices[0].delta.content or "" for c in chunks)
    finally:
        await sdk.close()
    assert answers == {"secret-of-A": "secret-of-A", "secret-of-B": "secret-of-B"}
    assert heads["secret-of-A"]["runcast-completion-id"] == REUSED_CHAT_ID
    assert "runcast-completion-id" not in heads["secret-of-B"]
    assert "runcast-subscribe-token" not in heads["secret-of-B"]

    own = f"{gateway.url}/streams/chat/{REUSED_CHAT_ID}"
    replayed = await _replay(session, own)
    assert b"secret-of-A" in replayed and b"secret-of-B" not in replayed
    async with session.get(own + "/snapshot") as response:
        snapshot = (await response.json())["snapshot"]
    assert snapshot["completion"]["choices"][0]["message"]["content"] == "secret-of-A"


@pytest.mark.asyncio
async def test_a_reused_response_id_gets_no_channel_and_leaves_the_first_ones_alone(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    sdk = sdk_client(gateway)
    try:
        for caller in ("secret-of-A", "secret-of-B"):
            raw = await sdk.responses.with_raw_response.create(model="m", input=caller, stream=True)
            events = [e async for e in raw.parse()]
            assert events[-1].type == "response.completed"
            assert ("runcast-response-id" in raw.headers) is (caller == "secret-of-A")
        retrieved = [e async for e in await sdk.responses.retrieve(REUSED_RESPONSE_ID, stream=True)]
    finally:
        await sdk.close()
    replayed = await _replay(session, f"{gateway.url}/streams/responses/{REUSED_RESPONSE_ID}")
    assert b"secret-of-A" in replayed and b"secret-of-B" not in replayed
    assert [e.sequence_number for e in retrieved] == [0, 1, 2]  # one response, not two


@pytest.mark.asyncio
async def test_a_reused_response_id_is_not_opened_by_the_later_callers_conversation_token(
    token_gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    gateway = token_gateway
    sdk = sdk_client(gateway)
    try:
        await sdk.responses.create(model="m", input="secret-of-A", stream=True)
        raw = await sdk.responses.with_raw_response.create(
            model="m", input="secret-of-B", stream=True, conversation="conv_B"
        )
        [e async for e in raw.parse()]
    finally:
        await sdk.close()
    token = raw.headers["runcast-conversation-token"]
    own = f"{gateway.url}/streams/responses/{REUSED_RESPONSE_ID}/snapshot"
    async with session.get(own, params={"token": token}) as refused:
        assert refused.status == 403


@pytest.mark.asyncio
async def test_a_new_run_with_the_id_of_a_held_run_is_refused(
    token_gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    gateway = token_gateway
    body = {"assistant_id": "asst_1", "stream": True}
    key = {"Authorization": "Bearer sk-x"}
    async with session.post(f"{gateway.v1}/threads/thread_A/runs", json=body, headers=key) as first:
        assert first.status == 200 and b"secret of thread_A" in await first.read()
    async with session.post(
        f"{gateway.v1}/threads/thread_B/runs", json=body, headers=key
    ) as second:
        answer = await second.read()
        assert "runcast-run-id" not in second.headers
    assert b"the upstream gave a new run the id of a run runcast holds" in answer
    assert b"secret of thread_B" not in answer
    # The held run is still thread_A's alone: its channel, its thread.
    token = first.headers["runcast-subscribe-token"]
    async with session.get(
        f"{gateway.url}/streams/runs/{REUSED_RUN_ID}", params={"since": "0", "token": token}
    ) as replay:
        replayed = await replay.read()
    assert b"secret of thread_A" in replayed and b"secret of thread_B" not in replayed
