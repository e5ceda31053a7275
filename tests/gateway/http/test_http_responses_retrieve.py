"""``GET /v1/responses/{id}?stream=true`` answered from runcast's log: the SDK's retrieve stream
of a response that streamed through runcast (a foreground one, which the upstream itself refuses
to re-stream) gets the original events from 0 or after ``starting_after``, live to the end; a
400 in the OpenAI error shape when the beginning is no longer held; other responses proxied."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from http_helpers import WAIT, Gateway, StartGateway, StartSim, sdk_client
from openai import AsyncOpenAI
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "input": "Weather in Oslo?", **extra}


def _dump(events: list[Any]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json", exclude_unset=True) for e in events]


@pytest.mark.asyncio
async def test_retrieve_stream_replays_the_log_from_zero_and_after_n(sdk: AsyncOpenAI) -> None:
    stream = await sdk.responses.create(**_body(), stream=True)
    original = [event async for event in stream]
    response_id = original[0].response.id
    # The upstream refuses this (not background): only runcast's log can answer.
    replay = [e async for e in await sdk.responses.retrieve(response_id, stream=True)]
    assert _dump(replay) == _dump(original)
    after = await sdk.responses.retrieve(response_id, stream=True, starting_after=4)
    assert _dump([e async for e in after]) == _dump(original[5:])
    async with sdk.responses.stream(response_id=response_id, starting_after=4) as helper:
        tail = [e.sequence_number async for e in helper]
        final = await helper.get_final_response()
    assert tail == [e.sequence_number for e in original[5:]]
    assert final.output_text == original[-1].response.output_text


@pytest.mark.asyncio
async def test_retrieve_stream_follows_a_live_response(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(sim={"delay_ms": 20, "deltas": 20})
    client = sdk_client(gateway)
    try:
        stream = await client.responses.create(**_body(), stream=True)
        first = await anext(stream)
        reader = asyncio.create_task(_collect(client, first.response.id))
        rest = [event async for event in stream]
        async with asyncio.timeout(WAIT):
            replay = await reader
    finally:
        await client.close()
    assert _dump(replay) == _dump([first, *rest])


@pytest.mark.asyncio
async def test_any_node_of_a_cluster_answers_from_the_shared_log(
    start_gateway: StartGateway,
    start_sim: StartSim,
    redis_server: RedisServer,
    session: aiohttp.ClientSession,
) -> None:
    # The response streamed through node a; node b holds nothing of it locally until asked.
    redis_server.flush()
    upstream = await start_sim()
    a = await start_gateway(upstream_url=upstream, broker=redis_server.url, node_id="a")
    b = await start_gateway(upstream_url=upstream, broker=redis_server.url, node_id="b")
    creator, reader = sdk_client(a), sdk_client(b)
    try:
        original = [e async for e in await creator.responses.create(**_body(), stream=True)]
        response_id = original[0].response.id
        async with session.head(f"{b.url}/streams/responses/{response_id}") as head:
            assert head.status == 200
        replay = [e async for e in await reader.responses.retrieve(response_id, stream=True)]
        assert _dump(replay) == _dump(original)
        after = await reader.responses.retrieve(response_id, stream=True, starting_after=4)
        assert _dump([e async for e in after]) == _dump(original[5:])
    finally:
        await creator.close()
        await reader.close()


async def _collect(client: AsyncOpenAI, response_id: str) -> list[Any]:
    return [e async for e in await client.responses.retrieve(response_id, stream=True)]


@pytest.mark.asyncio
async def test_beginning_no_longer_held_is_a_400(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(hub={"max_history_events": 5})
    client = sdk_client(gateway)
    try:
        original = [e async for e in await client.responses.create(**_body(), stream=True)]
        response_id = original[0].response.id
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.retrieve(response_id, stream=True)
        assert caught.value.code == "stream_history_lost"
        last = original[-1].sequence_number
        tail = await client.responses.retrieve(response_id, stream=True, starting_after=last - 3)
        assert _dump([e async for e in tail]) == _dump(original[-3:])
    finally:
        await client.close()
    answer = await session.get(
        f"{gateway.v1}/responses/{response_id}",
        params={"stream": "true", "starting_after": "x"},
        headers={"Authorization": "Bearer sk-x"},
    )
    assert answer.status == 400
    assert set((await answer.json())["error"]) == {"message", "type", "param", "code"}


@pytest.mark.asyncio
async def test_responses_runcast_does_not_hold_are_proxied(
    gateway: Gateway, sdk: AsyncOpenAI
) -> None:
    created = await sdk.responses.create(**_body(background=True))
    replay = [e async for e in await sdk.responses.retrieve(created.id, stream=True)]
    assert replay[-1].type == "response.completed"
    assert gateway.broker.channel_statistics(f"response:{created.id}") is None
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve("resp_unknown", stream=True)


@pytest.mark.asyncio
async def test_callers_key_check_with_the_upstream_gone_is_a_502(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    created = {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_g"}}
    completed = {"type": "response.completed", "sequence_number": 1, "response": {"id": "resp_g"}}

    async def create(request: web.Request) -> web.StreamResponse:
        body = b"".join(b"data: %s\n\n" % orjson.dumps(p) for p in (created, completed))
        return web.Response(body=body, content_type="text/event-stream")

    upstream = web.Application()
    upstream.router.add_post("/v1/responses", create)
    runner = web.AppRunner(upstream)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    gateway = await start_gateway(upstream_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1")
    auth = {"Authorization": "Bearer sk-caller"}
    try:
        async with session.post(
            f"{gateway.v1}/responses", json=_body(stream=True), headers=auth
        ) as creator:
            assert creator.status == 200 and b"response.completed" in await creator.read()
    finally:
        await runner.cleanup()
    answer = await session.get(
        f"{gateway.v1}/responses/resp_g", params={"stream": "true"}, headers=auth
    )
    assert answer.status == 502
    assert set((await answer.json())["error"]) == {"message", "type", "param", "code"}


@pytest.mark.asyncio
async def test_a_caller_without_a_key_is_not_answered_from_the_log(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # Callers' own keys pass on and subscribing needs a token: the log is no way around either.
    gateway = await start_gateway(subscribe_auth="token")
    client = sdk_client(gateway)
    try:
        original = [e async for e in await client.responses.create(**_body(), stream=True)]
    finally:
        await client.close()
    response_id = original[0].response.id
    async with session.get(f"{gateway.url}/streams/responses/{response_id}") as subscribed:
        assert subscribed.status == 401
    async with session.get(
        f"{gateway.v1}/responses/{response_id}", params={"stream": "true"}
    ) as anonymous:
        body = await anonymous.read()
        assert anonymous.status == 401, body  # the upstream's answer to a caller with no key
    assert b"response.output_text.delta" not in body
