"""UpstreamClient over real sockets: headers, typed operations, retries and non-retries, errors."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.errors import UpstreamConnectionError, UpstreamHTTPError, UpstreamTimeout
from gateway.upstream import UpstreamClient, UpstreamConnectError
from parsers.assistants import Run

from .servers import (
    FakeUpstream,
    RawServerFactory,
    fixture_bytes,
    json_response,
    make_settings,
    reply_json,
    reply_sse,
    stall_headers,
)

RUNS = "/threads/thread_9Qx/runs"
RUN = "/threads/thread_9Qx/runs/run_7Lm"


def run_json(status: str = "queued") -> dict[str, object]:
    return {
        "id": "run_7Lm",
        "object": "thread.run",
        "thread_id": "thread_9Qx",
        "assistant_id": "asst_42",
        "status": status,
        "created_at": 1730000000,
    }


ERROR = {"error": {"message": "busy", "type": "server_error", "param": None, "code": None}}


def rate_limited(headers: dict[str, str]) -> web.Response:
    return json_response(429, ERROR, headers)


# -- headers -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_headers(upstream: FakeUpstream) -> None:
    upstream.route("POST", RUNS, reply_json(200, run_json()))
    settings = make_settings(upstream.base_url, organization="org_1", project="proj_1")
    async with UpstreamClient(settings) as client:
        run = await client.create_run("thread_9Qx", {"assistant_id": "asst_42"})
    assert isinstance(run, Run) and run.status == "queued"
    headers = upstream.requests[0].headers
    assert headers["Authorization"] == "Bearer sk-settings-key"
    assert headers["OpenAI-Beta"] == "assistants=v2"
    assert headers["OpenAI-Organization"] == "org_1"
    assert headers["OpenAI-Project"] == "proj_1"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("runcast")


@pytest.mark.asyncio
async def test_per_call_key_replaces_the_settings_key_without_leaking(
    upstream: FakeUpstream,
) -> None:
    upstream.route("GET", RUN, reply_json(200, run_json()))
    async with UpstreamClient(make_settings(upstream.base_url)) as client:
        await client.retrieve_run("thread_9Qx", "run_7Lm", api_key="sk-caller")
        await client.retrieve_run("thread_9Qx", "run_7Lm")
        await client.retrieve_run(
            "thread_9Qx", "run_7Lm", headers={"authorization": "Bearer sk-header"}
        )
    auths = [r.headers.getall("Authorization") for r in upstream.requests]
    assert auths == [["Bearer sk-caller"], ["Bearer sk-settings-key"], ["Bearer sk-header"]]
    assert all("sk-caller" not in str(dict(r.headers)) for r in upstream.requests[1:])
    assert "sk-settings-key" not in repr(make_settings(upstream.base_url))


@pytest.mark.asyncio
async def test_no_key_no_authorization_header(upstream: FakeUpstream) -> None:
    upstream.route("GET", RUN, reply_json(200, run_json()))
    settings = make_settings(upstream.base_url, api_key=None, organization=None)
    async with UpstreamClient(settings) as client:
        await client.retrieve_run("thread_9Qx", "run_7Lm")
    headers = upstream.requests[0].headers
    assert "Authorization" not in headers
    assert "OpenAI-Organization" not in headers
    assert "Content-Type" not in headers  # a GET has no body
    assert headers["OpenAI-Beta"] == "assistants=v2"


@pytest.mark.asyncio
async def test_the_assistants_beta_header_goes_to_assistants_paths_only(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # It went with every call: /responses and /chat/completions are no beta, and a strict
    # OpenAI-compatible server may refuse an unknown beta there.
    for path in ("/responses", "/chat/completions", "/models", "/threads/thread_1", "/assistants"):
        upstream.route("POST", path, reply_json(200, {}))
        async with client.request("POST", path, body=b"{}") as resp:
            assert resp.status == 200
    betas = [r.headers.get("OpenAI-Beta") for r in upstream.requests]
    assert betas == [None, None, None, "assistants=v2", "assistants=v2"]


@pytest.mark.asyncio
async def test_extra_headers_override_and_hop_by_hop_are_dropped(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("GET", "/models", reply_json(200, {"data": []}))
    extra = {
        "openai-beta": "assistants=v1",
        "X-Custom": "1",
        "Connection": "upgrade",
        "Host": "evil.example",
        "Transfer-Encoding": "chunked",
    }
    async with client.request("GET", "/models", headers=extra) as resp:
        assert resp.status == 200
    headers = upstream.requests[0].headers
    assert headers.getall("OpenAI-Beta") == ["assistants=v1"]
    assert headers["X-Custom"] == "1"
    assert headers["Host"] == f"127.0.0.1:{upstream.port}"
    assert "Transfer-Encoding" not in headers
    assert headers.get("Connection", "").lower() != "upgrade"


@pytest.mark.asyncio
async def test_redirects_are_not_followed(upstream: FakeUpstream) -> None:
    other = FakeUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", other.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    other.port = runner.addresses[0][1]
    try:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPTemporaryRedirect(other.base_url + RUN)

        upstream.route("GET", RUN, redirect)
        async with UpstreamClient(make_settings(upstream.base_url)) as client:
            with pytest.raises(UpstreamHTTPError) as info:
                await client.retrieve_run("thread_9Qx", "run_7Lm")
        assert info.value.status == 307
        assert other.requests == []  # the key never reached the other origin
    finally:
        await runner.cleanup()


# -- operations --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_operations_paths_bodies_and_results(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", "/threads/runs", reply_json(200, run_json()))
    upstream.route("POST", RUN + "/submit_tool_outputs", reply_json(200, run_json("queued")))
    upstream.route("POST", RUN + "/cancel", reply_json(200, run_json("cancelling")))
    message = {
        "id": "msg_1",
        "object": "thread.message",
        "thread_id": "thread_9Qx",
        "role": "assistant",
        "content": [{"type": "text", "text": {"value": "hi", "annotations": []}}],
    }
    upstream.route(
        "GET",
        "/threads/thread_9Qx/messages",
        reply_json(
            200,
            {
                "object": "list",
                "data": [message],
                "first_id": "msg_1",
                "last_id": "msg_1",
                "has_more": False,
            },
        ),
    )
    step = {
        "id": "step_1",
        "object": "thread.run.step",
        "run_id": "run_7Lm",
        "type": "message_creation",
        "status": "completed",
        "step_details": {"type": "message_creation", "message_creation": {"message_id": "msg_1"}},
    }
    upstream.route(
        "GET", RUN + "/steps", reply_json(200, {"object": "list", "data": [step], "has_more": True})
    )

    run = await client.create_thread_and_run(b'{"assistant_id":"asst_42","stream":true}')
    assert run.id == "run_7Lm"
    run = await client.submit_tool_outputs(
        "thread_9Qx", "run_7Lm", [{"tool_call_id": "call_C3", "output": '{"temp_c":4}'}]
    )
    assert run.status == "queued"
    run = await client.cancel_run("thread_9Qx", "run_7Lm")
    assert run.status == "cancelling"
    page = await client.list_messages("thread_9Qx", limit=1, order="asc", run_id="run_7Lm")
    assert page.data[0].id == "msg_1" and page.first_id == "msg_1" and not page.has_more
    steps = await client.list_run_steps(
        "thread_9Qx",
        "run_7Lm",
        include=["step_details.tool_calls[*].file_search.results[*].content"],
    )
    assert steps.data[0].id == "step_1" and steps.has_more

    create, submit, cancel, messages, steps_req = upstream.requests
    assert orjson.loads(create.body) == {"assistant_id": "asst_42"}  # no stream on a plain call
    assert (
        submit.body == b'{"tool_outputs":[{"tool_call_id":"call_C3","output":"{\\"temp_c\\":4}"}]}'
    )
    assert cancel.body == b"" and "Content-Type" not in cancel.headers
    assert messages.raw_query == "limit=1&order=asc&run_id=run_7Lm"
    # the SDK's encoding of include[] (spec §1.2)
    assert steps_req.raw_query == (
        "include%5B%5D=step_details.tool_calls%5B%2A%5D.file_search.results%5B%2A%5D.content"
    )


@pytest.mark.asyncio
async def test_streamed_bodies_get_the_stream_flag_and_keep_their_bytes(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("F-run-failed.sse")))
    upstream.route(
        "POST", RUN + "/submit_tool_outputs", reply_sse(fixture_bytes("B2-after-submit.sse"))
    )
    raw = b'{ "assistant_id" : "asst_42",\n  "metadata": {"k": "v"} }'
    async with client.stream_run("thread_9Qx", raw) as stream:
        assert [i.name async for i in stream][-1] == "done"
    async with client.stream_submit_tool_outputs(
        "thread_9Qx", "run_7Lm", [{"tool_call_id": "call_C3", "output": "4"}]
    ) as stream:
        assert stream.run_id == "run_7Lm"
        assert [i.name async for i in stream][-1] == "done"
    first, second = upstream.requests
    assert first.body == b'{"stream":true, "assistant_id" : "asst_42",\n  "metadata": {"k": "v"} }'
    assert first.headers["Accept"] == "text/event-stream"
    assert (
        second.body == b'{"tool_outputs":[{"tool_call_id":"call_C3","output":"4"}],"stream":true}'
    )


@pytest.mark.asyncio
async def test_ids_are_quoted_as_one_path_segment(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(UpstreamHTTPError) as info:
        await client.retrieve_run("thread/../x", "run 1")
    assert info.value.status == 404
    assert upstream.requests[0].path == "/v1/threads/thread%2F..%2Fx/runs/run%201"


@pytest.mark.asyncio
async def test_use_before_start_is_an_error(upstream: FakeUpstream) -> None:
    client = UpstreamClient(make_settings(upstream.base_url))
    with pytest.raises(RuntimeError):
        await client.retrieve_run("t", "r")
    await client.start()
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.retrieve_run("t", "r")


# -- errors and retries --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_error_carries_status_body_and_headers(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    body = {
        "error": {
            "message": "Thread thread_9Qx already has an active run run_1.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    upstream.route("POST", RUNS, reply_json(400, body, {"x-request-id": "req_1"}))
    with pytest.raises(UpstreamHTTPError) as info:
        await client.create_run("thread_9Qx", {"assistant_id": "a"})
    exc = info.value
    assert exc.status == 400
    assert exc.body == body
    assert exc.error == body["error"]
    assert exc.headers["x-request-id"] == "req_1"
    assert len(upstream.requests) == 1


@pytest.mark.asyncio
async def test_non_json_error_body_is_kept_raw(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    async def bad_gateway(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="<html>bad gateway</html>")

    upstream.route("POST", RUNS, bad_gateway)
    with pytest.raises(UpstreamHTTPError) as info:
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}):
            pass
    assert info.value.body == b"<html>bad gateway</html>"
    assert info.value.error is None
    assert len(upstream.requests) == 1  # a POST is not retried on 502


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "hint",
    [
        {"Retry-After": "0"},
        {"retry-after-ms": "20"},
        {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"},
    ],
)
async def test_429_with_a_hint_is_retried_even_for_run_creation(
    upstream: FakeUpstream, client: UpstreamClient, hint: dict[str, str]
) -> None:
    async def limited(request: web.Request) -> web.StreamResponse:
        return rate_limited(hint)

    upstream.route("POST", RUNS, limited, reply_sse(fixture_bytes("A-text.sse")))
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        assert [i.name async for i in stream][-1] == "done"
    assert len(upstream.requests) == 2
    assert upstream.requests[0].body == upstream.requests[1].body
    stats = client.statistics()
    assert (stats.attempts, stats.retries, stats.open_responses) == (2, 1, 0)


@pytest.mark.asyncio
async def test_503_with_retry_after_then_success(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route(
        "POST", RUNS, reply_json(503, ERROR, {"Retry-After": "0"}), reply_json(200, run_json())
    )
    run = await client.create_run("thread_9Qx", {"assistant_id": "a"})
    assert run.id == "run_7Lm"
    assert client.statistics().retries == 1


@pytest.mark.asyncio
async def test_retries_are_bounded(upstream: FakeUpstream, client: UpstreamClient) -> None:
    upstream.route("POST", RUNS, reply_json(429, ERROR, {"Retry-After": "0"}))
    with pytest.raises(UpstreamHTTPError) as info:
        await client.create_run("thread_9Qx", {"assistant_id": "a"})
    assert info.value.status == 429
    assert len(upstream.requests) == 3  # max_retries=2
    assert client.statistics().retries == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [{}, {"Retry-After": "3600"}, {"Retry-After": "0", "x-should-retry": "false"}],
    ids=["no-hint", "hint-too-long", "should-not-retry"],
)
async def test_429_is_not_retried_without_a_usable_hint_for_post(
    upstream: FakeUpstream, client: UpstreamClient, headers: dict[str, str]
) -> None:
    upstream.route("POST", RUNS, reply_json(429, ERROR, headers), reply_json(200, run_json()))
    with pytest.raises(UpstreamHTTPError) as info:
        await client.create_run("thread_9Qx", {"assistant_id": "a"})
    assert info.value.status == 429
    assert len(upstream.requests) == 1


@pytest.mark.asyncio
async def test_500_is_never_retried_for_run_creation(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_json(500, ERROR), reply_json(200, run_json()))
    with pytest.raises(UpstreamHTTPError) as info:
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}):
            pass
    assert info.value.status == 500
    assert info.value.error == ERROR["error"]
    assert len(upstream.requests) == 1
    assert client.statistics().retries == 0


@pytest.mark.asyncio
async def test_500_is_retried_for_get(upstream: FakeUpstream, client: UpstreamClient) -> None:
    upstream.route(
        "GET", RUN, reply_json(500, ERROR), reply_json(502, ERROR), reply_json(200, run_json())
    )
    run = await client.retrieve_run("thread_9Qx", "run_7Lm")
    assert run.id == "run_7Lm"
    assert len(upstream.requests) == 3


@pytest.mark.asyncio
async def test_refused_connection_is_retried_then_raised(closed_port: int) -> None:
    settings = make_settings(f"http://127.0.0.1:{closed_port}/v1")
    async with UpstreamClient(settings) as client:
        with pytest.raises(UpstreamConnectError) as info:
            await client.create_run("thread_9Qx", {"assistant_id": "a"})
        stats = client.statistics()
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert (stats.attempts, stats.retries) == (3, 2)


@pytest.mark.asyncio
async def test_refused_connection_for_a_stream_and_no_retry_budget(closed_port: int) -> None:
    settings = make_settings(f"http://127.0.0.1:{closed_port}/v1", max_retries=0)
    async with UpstreamClient(settings) as client:
        with pytest.raises(UpstreamConnectionError):
            async with client.stream_run("thread_9Qx", {"assistant_id": "a"}):
                pass
        assert client.statistics().attempts == 1


@pytest.mark.asyncio
async def test_connection_closed_after_sending_is_not_retried_for_post(
    raw_server: RawServerFactory,
) -> None:
    server = await raw_server(lambda head, body: b"")
    async with UpstreamClient(make_settings(server.base_url)) as client:
        with pytest.raises(UpstreamConnectionError) as info:
            await client.create_run("thread_9Qx", {"assistant_id": "a"})
    assert not isinstance(info.value, UpstreamConnectError)
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_connection_closed_after_sending_is_retried_for_get(
    raw_server: RawServerFactory,
) -> None:
    answers = iter([b"", b"", b""])

    def script(head: bytes, body: bytes) -> bytes:
        reply = next(answers, None)
        if reply is not None:
            return reply
        payload = orjson.dumps(run_json())
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )

    server = await raw_server(script)
    settings = make_settings(server.base_url, max_retries=3)
    async with UpstreamClient(settings) as client:
        run = await client.retrieve_run("thread_9Qx", "run_7Lm")
        assert client.statistics().retries >= 1
    assert run.id == "run_7Lm"
    assert len(server.requests) == 4


@pytest.mark.asyncio
async def test_first_byte_timeout_waiting_for_headers_is_not_retried(
    upstream: FakeUpstream, short_client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, stall_headers(2.0))
    with pytest.raises(UpstreamTimeout) as info:
        async with short_client.stream_run("thread_9Qx", {"assistant_id": "a"}):
            pass
    assert info.value.phase == "first_byte"
    assert len(upstream.requests) == 1
    assert short_client.statistics().open_responses == 0
