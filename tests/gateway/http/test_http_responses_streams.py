"""Responses API streams through runcast: the official openai SDK as creator against the gateway
and its simulator on 127.0.0.1, SSE and WebSocket subscribers on the response, conversation and
named channels: identical sequences, resume, snapshots equal to the final response, the ids and
tokens in the creator's head, and a stream cut before its end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from http_helpers import (
    WAIT,
    Gateway,
    Received,
    StartGateway,
    Subscriber,
    sdk_client,
    served_upstream,
)
from openai import APIError, AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families
from protocol_helpers import TERMINAL, read_sse, read_ws, subscribe_sse


def _parsed(sub: Subscriber) -> list[tuple[str, Any]]:
    return [(e.event, orjson.loads(e.data)) for e in sub.events]


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "input": "Weather in Oslo?", **extra}


@pytest.mark.asyncio
async def test_sdk_stream_fans_out_to_sse_and_websocket_subscribers(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    conversation = await sdk.conversations.create()
    base = f"{gateway.url}/streams/conversations/{conversation.id}"
    sse_response, sse_task = await subscribe_sse(session, base)
    ws = await session.ws_connect(base)
    ws_task = asyncio.create_task(read_ws(ws))
    named_response, named_task = await subscribe_sse(
        session, f"{gateway.url}/streams/channels/session-42"
    )
    try:
        raw = await sdk.responses.with_raw_response.create(
            **_body(conversation=conversation.id),
            stream=True,
            extra_headers={"Runcast-Channel": "session-42"},
        )
        response_id = raw.headers["runcast-response-id"]
        assert raw.headers["runcast-conversation-id"] == conversation.id
        assert raw.headers["runcast-channel"] == "session-42"
        for name in ("subscribe", "conversation", "channel"):
            assert raw.headers[f"runcast-{name}-token"]
        seen = [event async for event in raw.parse()]
        async with asyncio.timeout(WAIT):
            over_sse, over_ws, named = await asyncio.gather(sse_task, ws_task, named_task)
    finally:
        sse_response.close()
        named_response.close()
        await ws.close()

    assert seen[0].type == "response.created" and seen[-1].type == "response.completed"
    assert seen[0].response.id == response_id
    creator = [(e.type, e.model_dump(mode="json", exclude_unset=True)) for e in seen]
    assert _parsed(over_sse) == _parsed(over_ws) == _parsed(named)
    assert [name for name, _ in _parsed(over_sse)] == [name for name, _ in creator]
    assert [data["sequence_number"] for _, data in _parsed(over_sse)] == list(range(len(seen)))
    assert over_sse.seqs == over_ws.seqs

    # The response's own channel, read after the fact from its start, has the same events.
    replay_response = await session.get(f"{gateway.url}/streams/responses/{response_id}?since=0")
    assert replay_response.status == 200
    async with asyncio.timeout(WAIT):
        replay = await read_sse(replay_response, until=lambda e: False)
    assert replay.ended and _parsed(replay) == _parsed(over_sse)

    snapshot = await (await session.get(f"{base}/snapshot")).json()
    final = over_sse.events[-1].json()["response"]
    assert snapshot["seq"] == over_sse.seqs[-1]
    assert snapshot["snapshot"]["response"]["id"] == response_id
    assert snapshot["snapshot"]["response"]["output"] == final["output"]
    assert (
        final["output"] == seen[-1].response.model_dump(mode="json", exclude_unset=True)["output"]
    )
    own = await (
        await session.get(f"{gateway.url}/streams/responses/{response_id}/snapshot")
    ).json()
    assert own["snapshot"] == snapshot["snapshot"]


@pytest.mark.asyncio
async def test_resume_from_last_event_id_on_the_response_channel(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    raw = await sdk.responses.with_raw_response.create(**_body(), stream=True)
    response_id = raw.headers["runcast-response-id"]
    seen = [event async for event in raw.parse()]
    url = f"{gateway.url}/streams/responses/{response_id}"
    whole = await read_sse(await session.get(url + "?since=0"), until=lambda e: False)
    middle = whole.events[len(whole.events) // 2]
    resumed_response = await session.get(url, headers={"Last-Event-ID": str(middle.id)})
    async with asyncio.timeout(WAIT):
        resumed = await read_sse(resumed_response, until=lambda e: False)
    assert resumed.events == whole.events[len(whole.events) // 2 + 1 :]
    assert len(whole.events) == len(seen)


@pytest.mark.asyncio
async def test_stream_helper_final_response_equals_the_snapshot(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    async with sdk.responses.stream(**_body()) as stream:
        texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.output_text == "".join(texts) and final.output_text
    snapshot = await (
        await session.get(f"{gateway.url}/streams/responses/{final.id}/snapshot")
    ).json()
    output = final.model_dump(mode="json", exclude_unset=True)["output"]
    for item in output:
        for part in item.get("content", []):
            part.pop("parsed")  # the helper's own addition (structured outputs)
    assert snapshot["snapshot"]["response"]["output"] == output
    assert snapshot["snapshot"]["response"]["status"] == "completed"


@pytest.mark.asyncio
async def test_without_stream_the_call_is_proxied(gateway: Gateway, sdk: AsyncOpenAI) -> None:
    response = await sdk.responses.create(**_body())
    assert response.status == "completed" and response.output_text
    assert gateway.broker.channel_statistics(f"response:{response.id}") is None


@pytest.mark.asyncio
async def test_unknown_response_channel_is_404_and_conversation_waits(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    response = await session.get(f"{gateway.url}/streams/responses/resp_nope")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown_response"
    bad = await session.post(
        f"{gateway.v1}/responses",
        json=_body(stream=True),
        headers={"Runcast-Channel": "no/slash", "Authorization": "Bearer sk-x"},
    )
    assert bad.status == 400


@pytest.mark.asyncio
async def test_subscribe_tokens_open_exactly_their_channel(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token")
    client = sdk_client(gateway)
    try:
        raw = await client.responses.with_raw_response.create(
            **_body(), stream=True, extra_headers={"Runcast-Channel": "tok"}
        )
        [event async for event in raw.parse()]
    finally:
        await client.close()
    response_id = raw.headers["runcast-response-id"]
    own = f"{gateway.url}/streams/responses/{response_id}/snapshot"
    named = f"{gateway.url}/streams/channels/tok/snapshot"
    assert (await session.get(own)).status == 401
    token = raw.headers["runcast-subscribe-token"]
    assert (await session.get(own, params={"token": token})).status == 200
    assert (await session.get(named, params={"token": token})).status == 403
    channel_token = raw.headers["runcast-channel-token"]
    assert (await session.get(named, params={"token": channel_token})).status == 200


@pytest.mark.asyncio
async def test_conversation_token_opens_its_responses_and_no_other(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token")
    client = sdk_client(gateway)
    try:
        conversation = await client.conversations.create()
        raw = await client.responses.with_raw_response.create(
            **_body(conversation=conversation.id), stream=True
        )
        [event async for event in raw.parse()]
        other = await client.responses.with_raw_response.create(**_body(), stream=True)
        [event async for event in other.parse()]
    finally:
        await client.close()
    token = raw.headers["runcast-conversation-token"]
    mine = f"{gateway.url}/streams/responses/{raw.headers['runcast-response-id']}"
    theirs = f"{gateway.url}/streams/responses/{other.headers['runcast-response-id']}"
    # a chat UI holding the conversation's token opens each response of it, stream and snapshot
    assert (await session.get(f"{mine}/snapshot", params={"token": token})).status == 200
    async with session.get(mine, params={"token": token, "since": "0"}) as stream:
        assert stream.status == 200
        replay = await read_sse(stream, until=lambda e: e.event == "response.completed")
    assert replay.events[0].json()["response"]["id"] == raw.headers["runcast-response-id"]
    # ... and nothing outside it; the response's own token does not open the conversation
    assert (await session.get(f"{theirs}/snapshot", params={"token": token})).status == 403
    conversation_url = f"{gateway.url}/streams/conversations/{conversation.id}/snapshot"
    own = raw.headers["runcast-subscribe-token"]
    assert (await session.get(conversation_url, params={"token": own})).status == 403


async def _around_runcast(gateway: Gateway, method: str, path: str) -> dict[str, Any]:
    """The simulator's own answer to ``method path``, asked around runcast (as another node or
    the agent backend would)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, gateway.upstream_url + path, headers={"Authorization": "Bearer sk-test"}
        ) as response,
    ):
        assert response.status == 200
        found: dict[str, Any] = await response.json()
        return found


async def _upstream_response(gateway: Gateway, response_id: str) -> dict[str, Any]:
    """The simulator's own stored response, read around runcast."""
    return await _around_runcast(gateway, "GET", f"/responses/{response_id}")


async def _finished(session: aiohttp.ClientSession, gateway: Gateway, outcome: str) -> float:
    async with session.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "runcast_runs_finished_total"
        and sample.labels == {"protocol": "responses", "outcome": outcome}
    )


def _ends_reconciled(event: Received) -> bool:
    return event.event in TERMINAL or event.event == "runcast.upstream_lost"


def _assert_reconciled(
    events: list[tuple[str, Any]],
    final: dict[str, Any],
    cursor: int,
    reason: str = "connection_lost",
) -> None:
    """The end of a stream cut after ``cursor``: ``runcast.recovered`` then the polled response."""
    (recovered_name, recovered), (end_name, end) = events[-2:]
    assert recovered_name == "runcast.recovered"
    assert recovered == {
        "type": "runcast.recovered",
        "kind": "response",
        "id": final["id"],
        "reason": reason,
        "status": "completed",
        "cursor": cursor,
    }
    assert end_name == "response.completed" and end["type"] == "response.completed"
    assert end["sequence_number"] == cursor + 1 and end["runcast_reconciled"] is True
    assert end["response"]["id"] == final["id"]
    assert end["response"]["output"] == final["output"]


@pytest.mark.asyncio
async def test_stored_foreground_stream_cut_is_polled_to_its_end(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    named_response = await session.get(f"{gateway.url}/streams/channels/cut")
    named_task = asyncio.create_task(read_sse(named_response, until=_ends_reconciled))
    stream = await sdk.responses.create(
        **_body(metadata={"mock_scenario": "drop"}),
        stream=True,
        extra_headers={"Runcast-Channel": "cut"},
    )
    seen = [event async for event in stream]
    async with asyncio.timeout(WAIT):
        named = await named_task
    named_response.close()
    response_id = seen[0].response.id
    final = await _upstream_response(gateway, response_id)
    # The simulator went on after the cut (a foreground response runs to its end upstream).
    assert final["status"] == "completed"
    full = final["output"][0]["content"][0]["text"]
    deltas = [e for e in seen if e.type == "response.output_text.delta"]
    before = "".join(e.delta for e in deltas)
    assert before and full.startswith(before) and len(full) > len(before)

    cursor = deltas[-1].sequence_number
    _assert_reconciled(_parsed(named), final, cursor)
    # The creator's SDK iterates it: the notice as an event of its own, then the final response.
    assert seen[-2].type == "runcast.recovered"
    assert seen[-1].type == "response.completed" and seen[-1].response.output_text == full
    assert seen[-1].sequence_number == cursor + 1
    snapshot = await (await session.get(f"{gateway.url}/streams/channels/cut/snapshot")).json()
    assert snapshot["snapshot"]["response"]["status"] == "completed"
    assert snapshot["snapshot"]["response"]["output"] == final["output"]
    own = await (
        await session.get(f"{gateway.url}/streams/responses/{response_id}/snapshot")
    ).json()
    assert own["snapshot"]["response"]["output"][0]["content"][0]["text"] == full
    async with asyncio.timeout(WAIT):
        while await _finished(session, gateway, "recovered") != 1:
            await asyncio.sleep(0.02)  # the relay counts its end after the creator's
    # Re-streamed from runcast's log: no gap in the sequence numbers, the same last word.
    replay = [e async for e in await sdk.responses.retrieve(response_id, stream=True)]
    assert [e.sequence_number for e in replay] == list(range(cursor + 2))
    assert replay[-1].type == "response.completed" and replay[-1].response.output_text == full


@pytest.mark.asyncio
async def test_stream_helper_ends_a_reconciled_response_with_the_full_text(
    gateway: Gateway, sdk: AsyncOpenAI
) -> None:
    async with sdk.responses.stream(**_body(metadata={"mock_scenario": "drop"})) as stream:
        names = [event.type async for event in stream]
        final = await stream.get_final_response()
    upstream = await _upstream_response(gateway, final.id)
    assert names[-1] == "response.completed"
    assert final.output_text == upstream["output"][0]["content"][0]["text"]


@pytest.mark.asyncio
async def test_unstored_foreground_stream_cut_ends_with_upstream_lost(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    named_response, named_task = await subscribe_sse(session, f"{gateway.url}/streams/channels/cut")
    stream = await sdk.responses.create(
        **_body(store=False, metadata={"mock_scenario": "drop"}),
        stream=True,
        extra_headers={"Runcast-Channel": "cut"},
    )
    seen = []
    with pytest.raises(APIError, match="runcast lost the upstream stream"):
        async for event in stream:
            seen.append(event)
    async with asyncio.timeout(WAIT):
        named = await named_task
    named_response.close()
    assert seen and seen[-1].type == "response.output_text.delta"
    assert "runcast.recovered" not in [e.event for e in named.events]
    last = named.events[-1]
    assert last.event == "runcast.upstream_lost"
    lost = last.json()
    assert lost["error"]["code"] == "upstream_lost" and lost["kind"] == "response"
    assert lost["id"] == seen[0].response.id
    assert lost["cursor"] == seen[-1].sequence_number
    assert "status" not in lost


@pytest.mark.parametrize("metadata", [{"mock_scenario": "drop"}, {"mock_drop_after": "3"}])
@pytest.mark.asyncio
async def test_background_stream_cut_is_resumed_without_gap_or_duplicate(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession, metadata: dict[str, str]
) -> None:
    named_response, named_task = await subscribe_sse(session, f"{gateway.url}/streams/channels/bg")
    stream = await sdk.responses.create(
        **_body(background=True, metadata=metadata),
        stream=True,
        extra_headers={"Runcast-Channel": "bg"},
    )
    seen = [event async for event in stream]
    async with asyncio.timeout(WAIT):
        named = await named_task
    named_response.close()
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].type == "response.completed"
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text == seen[-1].response.output_text
    assert [data["sequence_number"] for _, data in _parsed(named)] == list(range(len(seen)))
    snapshot = await (await session.get(f"{gateway.url}/streams/channels/bg/snapshot")).json()
    assert snapshot["snapshot"]["response"]["output"][0]["content"][0]["text"] == text


@pytest.mark.asyncio
async def test_background_stream_the_upstream_will_not_resume_is_polled_to_its_end(
    start_gateway: StartGateway,
) -> None:
    # The simulator refuses to re-stream a response older than its window (OpenAI: 5 minutes).
    gateway = await start_gateway(sim={"stream_window_s": 0.001})
    client = sdk_client(gateway)
    try:
        stream = await client.responses.create(
            **_body(background=True, metadata={"mock_scenario": "drop"}), stream=True
        )
        # At once: the refusal is not retried (five backoffs would take 5 s).
        async with asyncio.timeout(3.5):
            seen = [event async for event in stream]
    finally:
        await client.close()
    final = await _upstream_response(gateway, seen[0].response.id)
    deltas = [e for e in seen if e.type == "response.output_text.delta"]
    events = [(e.type, e.model_dump(mode="json", exclude_unset=True)) for e in seen]
    # The reason is the last failure: the refused resumption.
    _assert_reconciled(events, final, deltas[-1].sequence_number, reason="http_400")


@pytest.mark.parametrize("through", ["runcast", "upstream"])
@pytest.mark.asyncio
async def test_a_cancelled_response_ends_with_upstream_lost_naming_its_status(
    start_gateway: StartGateway,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    through: str,
) -> None:
    # 100 deltas 20 ms apart; the response is cancelled upstream at its first event. Its stream
    # then closes without a last word (the API has no cancelled event) and cannot be resumed.
    gateway = await start_gateway(sim={"stream_window_s": 0.001, "deltas": 100, "delay_ms": 20})
    named_response = await session.get(f"{gateway.url}/streams/channels/cancelled")
    named_task = asyncio.create_task(read_sse(named_response, until=_ends_reconciled))
    seen = []
    async with sdk_client(gateway) as client:
        stream = await client.responses.create(
            **_body(background=True),
            stream=True,
            extra_headers={"Runcast-Channel": "cancelled"},
        )
        async with asyncio.timeout(WAIT):
            with pytest.raises(APIError, match="runcast lost the upstream stream"):
                async for event in stream:
                    if not seen and through == "runcast":
                        await client.responses.cancel(event.response.id)
                    elif not seen:
                        await _around_runcast(
                            gateway, "POST", f"/responses/{event.response.id}/cancel"
                        )
                    seen.append(event)
            named = await named_task
    named_response.close()
    response_id = seen[0].response.id
    assert (await _upstream_response(gateway, response_id))["status"] == "cancelled"
    (recovered_name, recovered), (lost_name, lost) = _parsed(named)[-2:]
    assert recovered_name == "runcast.recovered" and lost_name == "runcast.upstream_lost"
    assert recovered["status"] == lost["status"] == "cancelled"
    assert recovered["id"] == lost["id"] == response_id
    # The creator's SDK yields the notice as an event of its own before it raises.
    assert seen[-1].type == "runcast.recovered" and "cancelled" in str(lost["error"]["message"])
    assert recovered["cursor"] == lost["cursor"] == seen[-2].sequence_number
    assert "response.completed" not in [name for name, _ in _parsed(named)]
    # Its stream's end is not taken for a cut to resume (5 resumptions, some 5 s of backoff,
    # before the poll found it cancelled), whether the cancel passed through runcast or not (a
    # node that does not relay the stream, the agent backend calling the upstream itself).
    assert not [r for r in caplog.records if "resuming" in r.getMessage()]


@pytest.mark.asyncio
async def test_shutdown_mid_stream_ends_creator_and_subscribers_explicitly(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # 500 deltas 20 ms apart: the response would stream for 10 s.
    gateway = await start_gateway(sim={"deltas": 500, "delay_ms": 20}, shutdown_timeout=30.0)
    named_response, named_task = await subscribe_sse(
        session, f"{gateway.url}/streams/channels/down"
    )
    creator_response = await session.post(
        f"{gateway.v1}/responses",
        json=_body(stream=True),
        headers={"Authorization": "Bearer sk-caller", "Runcast-Channel": "down"},
    )
    assert creator_response.status == 200
    creator_task = asyncio.create_task(read_sse(creator_response, until=lambda e: False))
    await asyncio.sleep(0.3)
    assert gateway.relays.statistics().active == 1
    async with asyncio.timeout(10):
        await gateway.runner.cleanup()
        creator = await creator_task
        named = await named_task
    named_response.close()
    creator_response.close()
    assert creator.ended and creator.events[-1].event == "runcast.shutdown"
    assert creator.events[-1].json()["error"]["code"] == "shutting_down"
    # Where the creator got to, as its last id said it (<epoch>-<seq>).
    last = next(e for e in reversed(creator.events) if e.id)
    notice = creator.events[-1].json()
    assert f"{notice['epoch']}-{notice['seq']}" == last.id
    assert named.events[-1].event == "runcast.shutdown"
    assert "response.completed" not in creator.names
    deltas = [e for e in creator.events if e.event == "response.output_text.delta"]
    assert deltas and gateway.relays.statistics().active == 0


@pytest.mark.asyncio
async def test_upstream_refusal_before_the_first_event_is_its_own_http_error(
    gateway: Gateway, sdk: AsyncOpenAI
) -> None:
    conversation = await sdk.conversations.create()
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive parameters"):
        await sdk.responses.create(
            **_body(conversation=conversation.id, previous_response_id="resp_x"), stream=True
        )
    assert gateway.relays.statistics().active == 0
    assert gateway.broker.channel_statistics(f"conversation:{conversation.id}") is None


def _frame(payload: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (payload["type"].encode(), orjson.dumps(payload))


def _background_events(response_id: str, count: int) -> list[bytes]:
    response = {
        "id": response_id,
        "object": "response",
        "status": "in_progress",
        "background": True,
    }
    out = [_frame({"type": "response.created", "sequence_number": 0, "response": response})]
    for n in range(1, count - 1):
        out.append(
            _frame(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": n,
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": f"d{n} ",
                }
            )
        )
    done = {**response, "status": "completed"}
    out.append(
        _frame({"type": "response.completed", "sequence_number": count - 1, "response": done})
    )
    return out


async def _cut_then_resumed(
    start_gateway: StartGateway,
    session: aiohttp.ClientSession,
    events: list[bytes],
    resumed: Callable[[int], bytes],
    *,
    sent: bytes | None = None,
) -> tuple[Subscriber, list[str], Gateway]:
    """A background response streamed through runcast, cut after ``events[:5]`` (or ``sent``); the upstream
    answers each resume after N with ``resumed(N)`` and a poll with the last event's response.
    What the creator got, the resumes' query strings, and the gateway."""
    asked: list[str] = []

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(events[:5]) if sent is None else sent)
        assert request.transport is not None
        request.transport.abort()  # cut mid-stream after sequence_number 4
        return response

    async def retrieve(request: web.Request) -> web.StreamResponse:
        if "stream" not in request.query:  # the poll: the response as it ended
            return web.json_response(orjson.loads(events[-1].split(b"data: ", 1)[1])["response"])
        asked.append(request.query_string)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(resumed(int(request.query["starting_after"])))
        await response.write_eof()
        return response

    upstream = web.Application()
    upstream.router.add_post("/v1/responses", create)
    upstream.router.add_get("/v1/responses/{id}", retrieve)
    async with served_upstream(upstream) as url:
        gateway = await start_gateway(upstream_url=url)
        async with session.post(
            f"{gateway.v1}/responses",
            json=_body(stream=True, background=True),
            headers={"Authorization": "Bearer sk-caller"},
        ) as creator_response:
            assert creator_response.status == 200
            async with asyncio.timeout(WAIT):
                creator = await read_sse(creator_response, until=lambda e: False)
    return creator, asked, gateway


@pytest.mark.asyncio
async def test_resumed_stream_that_repeats_events_is_relayed_once(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """An upstream whose resume starts before ``starting_after`` + 1: nothing is relayed twice."""
    events = _background_events("resp_dup", 10)
    creator, asked, _ = await _cut_then_resumed(
        start_gateway, session, events, lambda after: b"".join(events[after - 1 :])
    )
    assert asked == ["stream=true&starting_after=4"]
    numbers = [e.json()["sequence_number"] for e in creator.events]
    assert numbers == list(range(10))
    assert creator.events[-1].event == "response.completed"


@pytest.mark.asyncio
async def test_a_stale_event_before_the_cut_does_not_move_the_resumption_back(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    """The first stream repeats sequence_number 2 after 4, then is cut: the resumption starts
    after 4, the highest relayed (it started after 2: 3 and 4 were relayed twice)."""
    events = _background_events("resp_stale", 10)
    creator, asked, _ = await _cut_then_resumed(
        start_gateway,
        session,
        events,
        lambda after: b"".join(events[after + 1 :]),
        sent=b"".join(events[:5]) + events[2],
    )
    assert asked == ["stream=true&starting_after=4"]
    numbers = [e.json()["sequence_number"] for e in creator.events]
    assert numbers == [0, 1, 2, 3, 4, 2, *range(5, 10)]


@pytest.mark.asyncio
async def test_a_resumption_that_skips_events_is_resumed_again_from_before_the_skip(
    start_gateway: StartGateway, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first resume leaves out 5 and 6: they were lost unnoticed. The skip is a failed
    resumption, and the next one, from the same cursor, brings them."""
    from gateway.runs.protocols import settling

    monkeypatch.setattr(settling, "_RESUME_BACKOFF", 0.01)
    events = _background_events("resp_skip", 10)
    answers = [b"".join(events[7:]), b"".join(events[5:])]
    creator, asked, _ = await _cut_then_resumed(
        start_gateway, session, events, lambda after: answers.pop(0)
    )
    assert asked == ["stream=true&starting_after=4"] * 2
    numbers = [e.json()["sequence_number"] for e in creator.events]
    assert numbers == list(range(10))


@pytest.mark.asyncio
async def test_resumptions_answered_with_only_an_error_event_are_no_progress(
    start_gateway: StartGateway, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each resume brings one `error` event with the next sequence_number, then ends: that
    moved the cursor, so each counted as progress and the stream was resumed 100 times (the
    creator got 100 error events). Now the resumptions without progress are bounded."""
    from gateway.runs.protocols import settling

    monkeypatch.setattr(settling, "_RESUME_BACKOFF", 0.01)
    events = _background_events("resp_err", 10)

    def error(after: int) -> bytes:
        return _frame({"type": "error", "sequence_number": after + 1, "message": "overloaded"})

    creator, asked, _ = await _cut_then_resumed(start_gateway, session, events, error)
    assert len(asked) <= 6, asked
    assert [e.event for e in creator.events][-2:] == ["runcast.recovered", "response.completed"]


@pytest.mark.asyncio
async def test_a_resume_answered_with_another_responses_events_is_not_merged(
    start_gateway: StartGateway, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream answers the resume of resp_mix with resp_other's events: they were relayed,
    and the creator's response.completed and the snapshot named resp_other. Refused like a
    failed resumption; once those are spent, the response is polled to its end."""
    from gateway.runs.protocols import settling

    monkeypatch.setattr(settling, "_RESUME_BACKOFF", 0.01)
    other = _background_events("resp_other", 10)
    creator, asked, gateway = await _cut_then_resumed(
        start_gateway,
        session,
        _background_events("resp_mix", 10),
        lambda after: b"".join(other[5:]),
    )
    snapshot = await (
        await session.get(f"{gateway.url}/streams/responses/resp_mix/snapshot")
    ).json()
    # Its deltas name no response: those before its response.completed could not be told apart.
    assert asked[0] == "stream=true&starting_after=4"
    assert set(asked[1:]) == {"stream=true&starting_after=8"}
    assert not any(b"resp_other" in e.data for e in creator.events)
    assert [e.event for e in creator.events][-2:] == ["runcast.recovered", "response.completed"]
    assert creator.events[-1].json()["response"]["id"] == "resp_mix"
    assert snapshot["snapshot"]["response"]["id"] == "resp_mix"


@pytest.mark.asyncio
async def test_resumptions_are_bounded_in_all_not_only_without_progress(
    start_gateway: StartGateway, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream whose every resume brings one new event and ends: each was progress, so the
    stream was resumed four times a second until 64 MiB had come. Past the bound in all, the
    response is polled to its end."""
    from gateway.runs.protocols import settling

    monkeypatch.setattr(settling, "_RESUME_BACKOFF", 0.01)
    monkeypatch.setattr(settling, "MAX_RESUMES", 2)
    events = _background_events("resp_drip", 10)
    creator, asked, _ = await _cut_then_resumed(
        start_gateway, session, events, lambda after: events[after + 1]
    )
    assert asked == ["stream=true&starting_after=4", "stream=true&starting_after=5"]
    assert [e.event for e in creator.events][-2:] == ["runcast.recovered", "response.completed"]
    assert creator.events[-1].json()["response"]["id"] == "resp_drip"


@pytest.mark.asyncio
async def test_stalled_creator_is_cut_off_with_lagged_and_can_resume(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        sim={"deltas": 4000, "tokens_per_delta": 150},
        creator_buffer_bytes=64 * 1024,
        creator_write_timeout=0.5,
    )
    named_response, named_task = await subscribe_sse(
        session, f"{gateway.url}/streams/channels/slow"
    )
    body = orjson.dumps(_body(stream=True))
    creator = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    creator.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    creator.connect(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
    creator.sendall(
        b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sk-caller\r\n"
        b"Runcast-Channel: slow\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        async with asyncio.timeout(WAIT):
            named = await named_task
        assert named.events[-1].event == "response.completed"
        creator.setblocking(False)
        received = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            while not received.endswith(b"\r\n0\r\n\r\n"):  # the end of the chunked body
                chunk = await loop.sock_recv(creator, 1 << 20)
                assert chunk, "connection closed before the end of the body"
                received += chunk
    finally:
        creator.close()
        named_response.close()
    assert b"event: runcast.lagged\n" in received and b"response.completed" not in received
    notice = received[received.index(b"event: runcast.lagged") :]
    data = orjson.loads(notice.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert data["error"]["code"] == "lagged" and "/streams/responses/" in data["error"]["message"]
    response_id = named.events[0].json()["response"]["id"]
    async with session.get(
        f"{gateway.url}/streams/responses/{response_id}",
        params={"since": f"{data['epoch']}-{data['seq']}" if data["epoch"] else "0"},
    ) as rest:
        resumed = await read_sse(rest, until=lambda e: False)
    assert resumed.events, (rest.status, data)
    first = resumed.events[0]
    if first.event != "runcast.history_lost":  # else the response is larger than history holds
        assert first.seq == data["seq"] + 1
        assert resumed.events[-1].event == "response.completed"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [
        {"type": "error", "code": "server_error", "message": "flat oops", "param": None},
        {"type": "error", "error": {"type": "server_error", "message": "flat oops"}},
    ],
)
async def test_an_upstream_error_event_is_quoted_when_the_stream_is_then_lost(
    start_gateway: StartGateway, session: aiohttp.ClientSession, error: dict[str, Any]
) -> None:
    # The stream's error event, then its end, and the response cannot be read: the loss said
    # only "stream_truncated", the upstream's own words gone from the creator's error.
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_err", "object": "response", "status": "in_progress"},
    }

    async def create(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in (created, {**error, "sequence_number": 1}):
            await response.write(
                b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event))
            )
        return response

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "not found"}}, status=404)

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{id}", retrieve)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        async with session.post(f"{gateway.v1}/responses", json=_body(stream=True)) as response:
            text = (await response.read()).decode()
    lost = orjson.loads(text.split("event: runcast.upstream_lost\n", 1)[1].split("data: ", 1)[1])
    assert lost["error"]["message"].endswith("the upstream's last error: flat oops")


@pytest.mark.asyncio
async def test_a_resumption_that_fails_is_tried_within_its_own_budget_only(
    start_gateway: StartGateway, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every resume answered 500: 5 resumptions without progress, each retried twice more by
    the upstream client (15 requests), against the documented 5."""
    from gateway.runs.protocols import settling

    monkeypatch.setattr(settling, "_RESUME_BACKOFF", 0.01)
    events = _background_events("resp_500", 10)
    resumes: list[str] = []

    async def create(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(events[:5]))
        assert request.transport is not None
        request.transport.abort()
        return response

    async def retrieve(request: web.Request) -> web.Response:
        if "stream" not in request.query:
            return web.json_response(orjson.loads(events[-1].split(b"data: ", 1)[1])["response"])
        resumes.append(request.query_string)
        return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)

    upstream = web.Application()
    upstream.router.add_post("/v1/responses", create)
    upstream.router.add_get("/v1/responses/{id}", retrieve)
    async with served_upstream(upstream) as url:
        gateway = await start_gateway(
            upstream_url=url, upstream={"max_retries": 2, "backoff_base": 0.01}
        )
        async with session.post(
            f"{gateway.v1}/responses",
            json=_body(stream=True, background=True),
            headers={"Authorization": "Bearer sk-caller"},
        ) as creator_response:
            async with asyncio.timeout(WAIT):
                creator = await read_sse(creator_response, until=lambda e: False)
    assert len(resumes) == 5, resumes  # the relay's max_resumes without progress
    assert [e.event for e in creator.events][-2:] == ["runcast.recovered", "response.completed"]


def _text_response(response_id: str, text: str, *, start: int = 0) -> list[bytes]:
    """A foreground response's stream: created, one text delta, completed (numbered on from
    ``start``)."""
    response = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed"}
    done = {
        **response,
        "status": "completed",
        "output": [{**item, "content": [{"type": "output_text", "text": text}]}],
    }
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        },
        {"type": "response.completed", "response": done},
    ]
    return [_frame({**e, "sequence_number": start + n}) for n, e in enumerate(events)]


async def _relayed(
    start_gateway: StartGateway,
    session: aiohttp.ClientSession,
    body: bytes,
    response_id: str,
    last: Callable[[Received], bool],
    *,
    polled: dict[str, Any] | None = None,
    **request: Any,
) -> tuple[Subscriber, Subscriber, Subscriber, dict[str, Any], list[str]]:
    """``body`` as an upstream's answer to a streamed ``POST /responses``, relayed by runcast:
    what the creator, a subscriber of a named channel (subscribed before the POST, read up to
    the event ``last`` says is the stream's last: the channel stays open) and a later reader of
    the response's channel got, the response's snapshot, and the ids polled (answered with
    ``polled``, else 404)."""
    polls: list[str] = []

    async def create(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    async def retrieve(request: web.Request) -> web.Response:
        polls.append(request.match_info["id"])
        if polled is None:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        return web.json_response(polled)

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{id}", retrieve)
    async with served_upstream(app) as url:
        gateway = await start_gateway(upstream_url=url)
        named_response = await session.get(f"{gateway.url}/streams/channels/late-words")
        assert named_response.status == 200
        named_task = asyncio.create_task(read_sse(named_response, until=last))
        try:
            async with session.post(
                f"{gateway.v1}/responses",
                json=_body(stream=True, **request),
                headers={"Authorization": "Bearer sk-caller", "Runcast-Channel": "late-words"},
            ) as creator_response:
                assert creator_response.status == 200
                async with asyncio.timeout(WAIT):
                    creator = await read_sse(creator_response, until=lambda e: False)
            async with asyncio.timeout(WAIT):
                named = await named_task
        finally:
            named_response.close()
        own = f"{gateway.url}/streams/responses/{response_id}"
        async with asyncio.timeout(WAIT):
            replay = await read_sse(await session.get(own + "?since=0"), until=lambda e: False)
        snapshot = await (await session.get(own + "/snapshot")).json()
    return creator, named, replay, snapshot["snapshot"], polls


@pytest.mark.asyncio
async def test_events_after_the_terminal_event_are_dropped_and_logged_once(
    start_gateway: StartGateway, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that goes on after response.completed: its late delta was relayed to the
    creator and the subscribers and folded into the snapshot, already ``done``, whose text
    changed. The response's end is the channel's: nothing after it is relayed or folded, a
    ``[DONE]`` still ends the HTTP stream, and one warning says what was dropped."""
    late = _frame(
        {
            "type": "response.output_text.delta",
            "sequence_number": 5,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": " LATE",
        }
    )
    keepalive = _frame({"type": "keepalive", "sequence_number": 6})
    body = b"".join(_text_response("resp_late", "hello")) + late + keepalive + b"data: [DONE]\n\n"
    creator, named, replay, snapshot, polls = await _relayed(
        start_gateway, session, body, "resp_late", lambda e: e.data == b"[DONE]"
    )

    for got in (creator, named, replay):
        assert not any(b"LATE" in e.data or e.event == "keepalive" for e in got.events)
        names = [e.event for e in got.events if e.data != b"[DONE]"]
        assert names[-1] == "response.completed", names
    assert creator.ended and creator.events[-1].data == b"[DONE]"
    assert named.events == replay.events
    assert snapshot["done"] is True and snapshot["error"] is None
    assert snapshot["response"]["status"] == "completed"
    assert snapshot["response"]["output"][0]["content"][0]["text"] == "hello"
    assert polls == []
    lines = [r.getMessage() for r in caplog.records if "after its terminal event" in r.getMessage()]
    assert len(lines) == 1 and "resp_late" in lines[0], lines


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("foreign", "stored"),
    [(4, True), (1, True), (4, False)],
    ids=["terminal-stored", "lifecycle-stored", "terminal-unstored"],
)
async def test_a_first_stream_naming_another_response_is_cut_there(
    start_gateway: StartGateway, session: aiohttp.ClientSession, foreign: int, stored: bool
) -> None:
    """resp_mine's stream goes on with resp_theirs's lifecycle or terminal event: it was taken
    as resp_mine's, so its subscribers got the other's end and its snapshot named resp_theirs.
    Refused as on a resumption: nothing from that event on is relayed, and the stream, cut
    there, is polled to its end (stored) or ends with runcast.upstream_lost (protocol_error)."""
    mine = _text_response("resp_mine", "mine")
    theirs = _text_response("resp_theirs", "THEIRS")
    final = orjson.loads(mine[-1].split(b"data: ", 1)[1])["response"]
    creator, named, replay, snapshot, polls = await _relayed(
        start_gateway,
        session,
        b"".join(mine[:foreign] + theirs[foreign:]),
        "resp_mine",
        lambda e: e.event in TERMINAL or e.event == "runcast.upstream_lost",
        polled=final,
        **({} if stored else {"store": False}),
    )

    for got in (creator, named, replay):
        assert b"resp_theirs" not in b"".join(data for _, data in got.upstream), got.names
        assert [e.json()["sequence_number"] for e in got.events[:foreign]] == list(range(foreign))
    assert named.events == replay.events
    assert snapshot["response"]["id"] == "resp_mine"
    if stored:
        assert polls == ["resp_mine"]
        assert creator.names[-2:] == ["runcast.recovered", "response.completed"]
        assert creator.events[-1].json()["response"]["id"] == "resp_mine"
        assert named.names[-2:] == creator.names[-2:]
        assert snapshot["response"]["status"] == "completed"
        assert snapshot["response"]["output"][0]["content"][0]["text"] == "mine"
    else:
        assert polls == []
        assert creator.names[-1] == named.names[-1] == "runcast.upstream_lost"
        lost = creator.events[-1].json()
        assert lost["reason"] == "protocol_error" and lost["id"] == "resp_mine"
        assert "resp_theirs" in lost["error"]["message"]
        assert snapshot["done"] is True and snapshot["error"]["code"] == "upstream_lost"
