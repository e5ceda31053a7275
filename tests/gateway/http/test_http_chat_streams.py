"""Chat Completions streams through runcast: the official openai SDK as creator, SSE and
WebSocket subscribers on the completion's and the named channel: identical chunks, resume, a
snapshot equal to the joined chunks, and a stream cut before ``[DONE]`` ended, never retried."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from http_helpers import WAIT, Gateway, Received, StartGateway, sdk_client, served_upstream
from openai import APIError, AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families
from protocol_helpers import read_sse, read_ws, subscribe_sse


def _ends(event: Received) -> bool:
    return event.data == b"[DONE]" or event.event.startswith("runcast.")


def _parsed(event: Received) -> tuple[str, Any]:
    return event.event, (None if event.data == b"[DONE]" else event.json())


def _messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.mark.asyncio
async def test_sdk_chat_stream_fans_out_and_snapshots(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/streams/channels/chat-7"
    sse_response = await session.get(url)
    sse_task = asyncio.create_task(read_sse(sse_response, until=_ends))
    ws = await session.ws_connect(url)
    ws_task = asyncio.create_task(read_ws(ws, until=_ends))
    try:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=_messages(),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"Runcast-Channel": "chat-7"},
        )
        completion_id = raw.headers["runcast-completion-id"]
        assert raw.headers["runcast-subscribe-token"] and raw.headers["runcast-channel-token"]
        chunks = [chunk async for chunk in raw.parse()]
        async with asyncio.timeout(WAIT):
            over_sse, over_ws = await asyncio.gather(sse_task, ws_task)
    finally:
        sse_response.close()
        await ws.close()

    assert {chunk.id for chunk in chunks} == {completion_id}
    assert [_parsed(e) for e in over_sse.events] == [_parsed(e) for e in over_ws.events]
    assert over_sse.events[-1].data == b"[DONE]"
    assert [e.json() for e in over_sse.events[:-1]] == [
        c.model_dump(mode="json", exclude_unset=True) for c in chunks
    ]
    assert over_sse.seqs == over_ws.seqs

    own = f"{gateway.url}/streams/chat/{completion_id}"
    replay = await read_sse(await session.get(own + "?since=0"), until=lambda e: False)
    assert replay.ended and replay.events == over_sse.events
    half = replay.events[len(replay.events) // 2]  # ids of this channel's own epoch
    resumed_response = await session.get(own, headers={"Last-Event-ID": str(half.id)})
    resumed = await read_sse(resumed_response, until=lambda e: False)
    assert resumed.events == over_sse.events[len(over_sse.events) // 2 + 1 :]

    snapshot = await (await session.get(own + "/snapshot")).json()
    completion = snapshot["snapshot"]["completion"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert completion["id"] == completion_id and text
    assert completion["choices"][0]["message"]["content"] == text
    assert completion["usage"] == chunks[-1].usage.model_dump(mode="json", exclude_unset=True)
    assert snapshot["snapshot"]["done"] is True
    named = await (await session.get(url + "/snapshot")).json()
    assert named["snapshot"] == snapshot["snapshot"]


@pytest.mark.asyncio
async def test_chat_stream_helper_final_completion_equals_the_snapshot(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    async with sdk.chat.completions.stream(model="gpt-4o", messages=_messages()) as stream:  # type: ignore[arg-type]
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    snapshot = await (await session.get(f"{gateway.url}/streams/chat/{final.id}/snapshot")).json()
    message = snapshot["snapshot"]["completion"]["choices"][0]
    assert message["message"]["content"] == final.choices[0].message.content
    assert message["finish_reason"] == final.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_chat_stream_cut_before_done_ends_with_upstream_lost_once(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/streams/channels/chat-cut"
    sse_response, task = await subscribe_sse(session, url)
    stream = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=_messages(),  # type: ignore[arg-type]
        stream=True,
        metadata={"mock_scenario": "drop"},
        extra_headers={"Runcast-Channel": "chat-cut"},
    )
    seen = []
    with pytest.raises(APIError, match="runcast lost the upstream stream"):
        async for chunk in stream:
            seen.append(chunk)
    async with asyncio.timeout(WAIT):
        sub = await task
    sse_response.close()
    assert seen and sub.events[-1].event == "runcast.upstream_lost"
    lost = sub.events[-1].json()
    assert lost["kind"] == "chat" and lost["id"] == seen[0].id and lost["cursor"] is None
    assert len(sub.events) == len(seen) + 1  # nothing after the loss: never retried


@pytest.mark.asyncio
async def test_protocol_streams_move_the_run_counters(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    [e async for e in await sdk.responses.create(model="gpt-5", input="Hi", stream=True)]
    cut = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=_messages(),  # type: ignore[arg-type]
        stream=True,
        metadata={"mock_scenario": "drop"},
    )
    with pytest.raises(APIError):
        [c async for c in cut]
    async with session.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("runcast_runs_started_total", protocol="responses") == 1
    assert value("runcast_runs_finished_total", protocol="responses", outcome="ended") == 1
    assert value("runcast_runs_started_total", protocol="chat") == 1
    assert value("runcast_runs_finished_total", protocol="chat", outcome="upstream_lost") == 1


@pytest.mark.asyncio
async def test_nothing_after_done_is_relayed(start_gateway: StartGateway) -> None:
    # A server that goes on after `data: [DONE]`: that is the end of the HTTP stream.
    def chunk(text: str) -> bytes:
        delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        body = {"id": "chatcmpl-d", "object": "chat.completion.chunk", "choices": [delta]}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            chunk("kept") + b"data: [DONE]\n\n" + chunk("after") + b"data: [DONE]\n\n"
        )
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        body = {"model": "gpt-4o", "messages": _messages(), "stream": True}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{gateway.v1}/chat/completions",
                json=body,
                headers={"Authorization": "Bearer sk-x"},
            ) as response,
        ):
            assert response.status == 200
            received = await response.read()
    assert received.count(b"[DONE]") == 1
    assert b"kept" in received and b"after" not in received


@pytest.mark.asyncio
async def test_a_chat_stream_ended_before_done_is_told_in_chat_words(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # A body that ends cleanly without [DONE]: the loss names the completion and what it
    # lacked, not a run and its "last run status: None" (the Assistants wording it had).
    chunk = {
        "id": "chatcmpl-short",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with session.post(f"{gateway.v1}/chat/completions", json=body) as response:
            text = (await response.read()).decode()
    lost = orjson.loads(text.split("event: runcast.upstream_lost\n", 1)[1].split("data: ", 1)[1])
    message = lost["error"]["message"]
    assert "upstream stream of chat chatcmpl-short ended before [DONE]" in message
    assert "for run" not in message and "run status" not in message


def _nodone_chunk(index: int, text: str, finish: str | None = None) -> bytes:
    choice = {"index": index, "delta": {"content": text}, "finish_reason": finish}
    body = {
        "id": "chatcmpl-nodone",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tail", "complete"),
    [
        (b"", True),  # TGI before 2.1: no [DONE] at all
        (b"data: [DONE]", True),  # llama.cpp: its last line has no blank line after it
        (b"data: [DONE]\n", True),
        (_nodone_chunk(1, "b") + _nodone_chunk(1, "c"), False),  # choice 1 never finished: a cut
    ],
)
async def test_a_stream_whose_choices_all_finished_is_complete_without_done(
    start_gateway: StartGateway, session: aiohttp.ClientSession, tail: bytes, complete: bool
) -> None:
    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_nodone_chunk(0, "Hel") + _nodone_chunk(0, "lo", "stop") + tail)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        sdk = AsyncOpenAI(base_url=gateway.v1, api_key="sk-x", max_retries=0)
        try:
            stream = await sdk.chat.completions.create(
                model="m",
                messages=_messages(),
                stream=True,  # type: ignore[arg-type]
            )
            if complete:
                chunks = [c async for c in stream]
                assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
                assert chunks[-1].choices[0].finish_reason == "stop"
            else:
                with pytest.raises(APIError, match="ended before"):
                    [c async for c in stream]
        finally:
            await sdk.close()
        async with session.get(f"{gateway.url}/streams/chat/chatcmpl-nodone/snapshot") as got:
            snapshot = (await got.json())["snapshot"]
        async with session.get(f"{gateway.url}/streams/chat/chatcmpl-nodone?since=0") as replay:
            events = await read_sse(replay, until=_ends)
    assert snapshot["done"] is True
    assert (snapshot["error"] is None) is complete
    assert snapshot["completion"]["choices"][0]["message"]["content"] == "Hello"
    assert (events.events[-1].data == b"[DONE]") is complete


async def _final_and_snapshot(
    start_gateway: StartGateway, session: aiohttp.ClientSession, payloads: list[bytes]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK stream helper's final message through runcast from an upstream sending these
    chunk payloads, and the message of runcast's snapshot of that completion."""

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(b"data: " + p + b"\n\n" for p in payloads))
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        client = sdk_client(gateway)
        try:
            async with client.chat.completions.stream(model="m", messages=_messages()) as stream:  # type: ignore[arg-type]
                async for _ in stream:
                    pass
                final = await stream.get_final_completion()
        finally:
            await client.close()
        own = f"{gateway.url}/streams/chat/{final.id}/snapshot"
        snapshot = await (await session.get(own)).json()
    message = snapshot["snapshot"]["completion"]["choices"][0]["message"]
    return final.choices[0].message.model_dump(mode="json"), message


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return orjson.dumps({**body, "choices": [choice]})


@pytest.mark.asyncio
async def test_the_snapshot_keeps_annotations_and_audio_as_the_sdk_does(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    cited = {"url": "https://x", "title": "x", "start_index": 0, "end_index": 3}
    citation = {"type": "url_citation", "url_citation": cited}
    final, message = await _final_and_snapshot(
        start_gateway,
        session,
        [
            _chunk({"role": "assistant", "content": "See", "annotations": [citation]}),
            _chunk({"audio": {"id": "audio_1", "transcript": "He", "data": "AAA"}}),
            _chunk({"audio": {"transcript": "llo", "data": "BBB", "expires_at": 123}}, "stop"),
        ],
    )
    assert message["annotations"] == final["annotations"] == [citation]
    audio = {"id": "audio_1", "data": "AAABBB", "expires_at": 123, "transcript": "Hello"}
    assert message["audio"] == final["audio"] == audio


@pytest.mark.asyncio
async def test_a_surrogate_pair_split_across_deltas_is_one_character_in_the_snapshot(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # orjson writes the halves raw, which is not UTF-8: the escapes are written by hand.
    head = _chunk({"role": "assistant", "content": "SPLIT"}).split(b"SPLIT")
    final, message = await _final_and_snapshot(
        start_gateway,
        session,
        [b"smile \\ud83d".join(head), b"\\ude00 ok".join(head), _chunk({}, "stop")],
    )
    assert message["content"] == "smile \U0001f600 ok"
    halves = final["content"].encode("utf-16-le", "surrogatepass")
    assert halves.decode("utf-16-le") == message["content"]


@pytest.mark.asyncio
async def test_chunks_that_each_carry_their_own_id_are_one_completion(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """Not refused, unlike a Responses event naming another response: servers give every chunk
    an id of its own (llama.cpp before ggml-org/llama.cpp#5988, LiteLLM before
    BerriAI/litellm#1572, microsoft/foundry-local#144). The stream is its first chunk id's: the
    creator and that id's channel get every chunk, and its snapshot joins them."""
    pieces = [("chatcmpl-a", "Hel", None), ("chatcmpl-b", "lo", None), ("chatcmpl-c", "", "stop")]
    body = b""
    for chunk_id, text, finish in pieces:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        chunk = {"id": chunk_id, "object": "chat.completion.chunk", "created": 1, "model": "m"}
        body += b"data: " + orjson.dumps({**chunk, "choices": [choice]}) + b"\n\n"

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body + b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", create)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        request = {"model": "m", "messages": _messages(), "stream": True}
        async with session.post(f"{gateway.v1}/chat/completions", json=request) as response:
            assert response.headers["runcast-completion-id"] == "chatcmpl-a"
            creator = await read_sse(response, until=_ends)
        own = f"{gateway.url}/streams/chat/chatcmpl-a"
        async with session.get(own + "?since=0") as replay:
            channel = await read_sse(replay, until=_ends)
        snapshot = (await (await session.get(own + "/snapshot")).json())["snapshot"]
    ids = [e.json()["id"] for e in creator.events if e.data != b"[DONE]"]
    assert ids == ["chatcmpl-a", "chatcmpl-b", "chatcmpl-c"]
    assert [_parsed(e) for e in channel.events] == [_parsed(e) for e in creator.events]
    assert channel.events[-1].data == b"[DONE]"
    assert snapshot["done"] is True and snapshot["error"] is None
    assert snapshot["completion"]["id"] == "chatcmpl-a"
    assert snapshot["completion"]["choices"][0]["message"]["content"] == "Hello"
