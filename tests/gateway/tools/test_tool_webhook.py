"""Webhook handlers against a real local aiohttp server (gateway/tools/webhook.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from tool_scenarios import SECRET, AutomationFactory, Recorder, make_run

from gateway.errors import ToolError
from gateway.runs.actions import HeldAction
from gateway.tools import Submit, sign, verify_signature
from gateway.tools.handlers import ToolCall
from gateway.tools.webhook import (
    ATTEMPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookHandler,
)

RECEIVED = web.AppKey("received", list)
FAILURES_LEFT = web.AppKey("failures_left", dict)


async def receive(request: web.Request) -> dict[str, Any]:
    """What a receiver does: verify the signature over the raw body, then parse it."""
    body = await request.read()
    if not verify_signature(
        SECRET,
        request.headers.get(TIMESTAMP_HEADER, ""),
        body,
        request.headers.get(SIGNATURE_HEADER, ""),
    ):
        raise web.HTTPUnauthorized(text="bad signature")
    document: dict[str, Any] = orjson.loads(body)
    request.app[RECEIVED].append(
        {
            "path": request.path,
            "body": document,
            "attempt": request.headers[ATTEMPT_HEADER],
            "idempotency_key": request.headers["Idempotency-Key"],
            "traceparent": request.headers.get("traceparent"),
        }
    )
    return document


async def plain(request: web.Request) -> web.Response:
    call = await receive(request)
    return web.Response(text=f"sunny in {call['arguments']['city']}")


async def json_output(request: web.Request) -> web.Response:
    call = await receive(request)
    if call["name"] == "as_text":
        return web.json_response({"output": "a plain string", "ignored": True})
    if call["name"] == "no_output_key":
        return web.json_response({"temp_c": 4})
    return web.json_response({"output": {"temp_c": 4, "city": call["arguments"]["city"]}})


async def flaky(request: web.Request) -> web.Response:
    await receive(request)
    left = request.app[FAILURES_LEFT]
    if left[request.path] > 0:
        left[request.path] -= 1
        return web.Response(status=503, text="warming up")
    return web.Response(text="recovered")


async def rejected(request: web.Request) -> web.Response:
    await receive(request)
    return web.Response(status=400, text="unknown city")


async def not_found(request: web.Request) -> web.Response:
    await receive(request)
    return web.Response(status=404, text=f"Cannot POST {request.path}")  # as Express says it


async def refuses_its_token(request: web.Request) -> web.Response:
    await receive(request)
    token, version = request.query["token"], request.query["v"]
    # Many receivers quote what they refuse.
    text = f"invalid token {token} (v{version})"
    if "Authorization" in request.headers:
        auth = aiohttp.BasicAuth.decode(request.headers["Authorization"])
        text += f" for {auth.login}:{auth.password}"
    return web.Response(status=403, text=text)


async def refuses_its_authorization(request: web.Request) -> web.Response:
    await receive(request)
    return web.Response(status=403, text=f"refused: {request.headers.get('Authorization')}")


async def too_deep(request: web.Request) -> web.Response:
    await receive(request)
    return web.Response(
        text='{"output": ' + "[" * 1000 + "]" * 1000 + "}", content_type="application/json"
    )


async def echo_name(request: web.Request) -> web.Response:
    call = await receive(request)
    return web.Response(text=f"handled {call['name']}")


async def submitted(automation_for: AutomationFactory, run: HeldAction, **settings: Any) -> Submit:
    """The :class:`Submit` an automation with ``settings`` answers ``run``'s action with."""
    async with automation_for(**settings) as automation:
        outcome = await automation.run_action(run)
    assert isinstance(outcome, Submit)
    return outcome


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[str, web.Application]]:
    app = web.Application()
    app[RECEIVED] = []
    app[FAILURES_LEFT] = {"/flaky": 1, "/down": 100}
    app.router.add_post("/plain", plain)
    app.router.add_post("/json", json_output)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/down", flaky)
    app.router.add_post("/rejected", rejected)
    app.router.add_post("/any", echo_name)
    app.router.add_post("/deep", too_deep)
    app.router.add_post("/refuses", refuses_its_token)
    app.router.add_post("/refuses-auth", refuses_its_authorization)
    app.router.add_post("/services/T0001/B0002/PATH-SECRET", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_signed_request_and_plain_text_output(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("call_C3", "get_weather", '{"city":"Oslo"}'), run_id="run_7", thread_id="t_9")
    # An empty trace context whatever an earlier test left in the one pytest-asyncio carries over.
    token = otel_context.attach(otel_context.Context())
    try:
        async with automation_for(webhooks={"get_weather": f"{base}/plain"}) as automation:
            assert automation.handles(run)
            outcome = await automation.run_action(run)
    finally:
        otel_context.detach(token)
    assert isinstance(outcome, Submit)
    assert outcome.as_dicts() == [{"tool_call_id": "call_C3", "output": "sunny in Oslo"}]
    (received,) = app[RECEIVED]
    assert received["body"] == {
        "run_id": "run_7",
        "thread_id": "t_9",
        "tool_call_id": "call_C3",
        "name": "get_weather",
        "arguments": {"city": "Oslo"},
        "arguments_raw": '{"city":"Oslo"}',
    }
    assert received["attempt"] == "1"
    assert received["idempotency_key"] == "run_7:call_C3"


@pytest.mark.asyncio
async def test_the_trace_in_context_reaches_the_webhook(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("call_C4", "get_weather", '{"city":"Oslo"}'), run_id="run_8", thread_id="t_9")
    parent = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        async with automation_for(webhooks={"get_weather": f"{base}/plain"}) as automation:
            await automation.run_action(run)
    finally:
        otel_context.detach(token)
    (received,) = app[RECEIVED]
    assert received["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


@pytest.mark.asyncio
async def test_json_response_output_field(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, _ = receiver
    url = f"{base}/json"
    run = make_run(
        ("c1", "get_weather", '{"city":"Oslo"}'),
        ("c2", "as_text", "{}"),
        ("c3", "no_output_key", "{}"),
    )
    webhooks = {"get_weather": url, "as_text": url, "no_output_key": url}
    outcome = await submitted(automation_for, run, webhooks=webhooks)
    assert outcome.as_dicts() == [
        {"tool_call_id": "c1", "output": '{"temp_c":4,"city":"Oslo"}'},
        {"tool_call_id": "c2", "output": "a plain string"},
        {"tool_call_id": "c3", "output": '{"temp_c": 4}'},  # no "output": the body as sent
    ]


@pytest.mark.asyncio
async def test_retry_after_503_then_success(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("c1", "t", "{}"))
    outcome = await submitted(automation_for, run, webhooks={"t": f"{base}/flaky"})
    assert outcome.as_dicts() == [{"tool_call_id": "c1", "output": "recovered"}]
    assert [r["attempt"] for r in app[RECEIVED]] == ["1", "2"]
    assert {r["idempotency_key"] for r in app[RECEIVED]} == {"run_1:c1"}


@pytest.mark.asyncio
async def test_5xx_retries_are_bounded(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("c1", "t", "{}"))
    outcome = await submitted(
        automation_for, run, webhooks={"t": f"{base}/down"}, webhook_retries=2
    )
    error = orjson.loads(outcome.tool_outputs[0].output)["error"]
    assert "HTTP 503: warming up" in error
    assert error.endswith("(gave up after 3 attempts)")
    assert len(app[RECEIVED]) == 3


@pytest.mark.asyncio
async def test_no_retry_on_400(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("c1", "t", "{}"))
    outcome = await submitted(automation_for, run, webhooks={"t": f"{base}/rejected"})
    assert orjson.loads(outcome.tool_outputs[0].output) == {
        "error": "webhook of tool 't' answered HTTP 400: unknown city"
    }
    assert len(app[RECEIVED]) == 1


@pytest.mark.asyncio
async def test_an_output_nested_too_deeply_to_re_encode_is_a_webhook_error(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, _ = receiver
    run = make_run(("c1", "t", "{}"))
    outcome = await submitted(automation_for, run, webhooks={"t": f"{base}/deep"})
    assert orjson.loads(outcome.tool_outputs[0].output) == {
        "error": "webhook of tool 't' answered JSON whose output cannot be re-encoded: "
        "Recursion limit reached"
    }


@pytest.mark.asyncio
async def test_wrong_secret_is_refused_by_the_receiver(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("c1", "get_weather", '{"city":"Oslo"}'))
    outcome = await submitted(
        automation_for,
        run,
        webhooks={"get_weather": f"{base}/plain"},
        webhook_secret="not-the-signing-secret",
    )
    assert "HTTP 401: bad signature" in outcome.tool_outputs[0].output
    assert app[RECEIVED] == []


@pytest.mark.asyncio
async def test_connection_refused_is_retried_then_an_error_output(
    automation_for: AutomationFactory,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = make_run(("c1", "t", "{}"))
    outcome = await submitted(
        automation_for, run, webhooks={"t": f"http://127.0.0.1:{port}/x"}, webhook_retries=1
    )
    error = orjson.loads(outcome.tool_outputs[0].output)["error"]
    assert "unreachable" in error
    assert error.endswith("(gave up after 2 attempts)")


@pytest.mark.asyncio
async def test_fallback_webhook_answers_every_other_tool(
    receiver: tuple[str, web.Application], automation_for: AutomationFactory
) -> None:
    base, app = receiver
    run = make_run(("c1", "get_weather", '{"city":"Oslo"}'), ("c2", "anything_else", "{}"))
    webhooks = {"get_weather": f"{base}/plain", "*": f"{base}/any"}
    outcome = await submitted(automation_for, run, webhooks=webhooks)
    assert outcome.as_dicts() == [
        {"tool_call_id": "c1", "output": "sunny in Oslo"},
        {"tool_call_id": "c2", "output": "handled anything_else"},
    ]
    assert sorted(r["path"] for r in app[RECEIVED]) == ["/any", "/plain"]


@pytest.mark.asyncio
async def test_a_webhook_path_never_leaves_the_process(
    receiver: tuple[str, web.Application],
    automation_for: AutomationFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Slack or Discord style, the path is the credential: the error text goes to the model (the
    # output) and every subscriber (the event), so it names the tool, not the URL; logs show
    # scheme://host:port only.
    base, _ = receiver
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret_path = "/services/T0001/B0002/PATH-SECRET"
    webhooks = {"notify": f"{base}{secret_path}", "gone": f"http://127.0.0.1:{port}{secret_path}"}
    run = make_run(("c1", "notify", "{}"), ("c2", "gone", "{}"))
    recorder = Recorder()
    caplog.set_level(logging.INFO, logger="runcast")
    async with automation_for(webhooks=webhooks, webhook_retries=0) as automation:
        async with asyncio.timeout(5):
            outcome = await automation.run_action(run, recorder)
    assert isinstance(outcome, Submit)
    errors = {o.tool_call_id: orjson.loads(o.output)["error"] for o in outcome.tool_outputs}
    assert errors["c1"] == "webhook of tool 'notify' answered HTTP 404: Cannot POST ***"
    assert errors["c2"] == (
        "webhook of tool 'gone' unreachable: Connection refused (ClientConnectorError) "
        "(gave up after 1 attempts)"
    )
    failed = [d["error"] for n, d in recorder.events if n == "runcast.tool_call.failed"]
    assert sorted(failed) == sorted(errors.values())
    # runcast's own lines (the receiver's access log, in this process too, shows its request).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("runcast"))
    assert f"http://127.0.0.1:{port}/***" in logged
    for text in (*errors.values(), logged):
        assert "PATH-SECRET" not in text
        assert "B0002" not in text


async def _refused_once(
    automation_for: AutomationFactory, url: str, caplog: pytest.LogCaptureFixture
) -> tuple[str, list[str], str]:
    """One call of tool ``notify`` to the webhook at ``url``, which refuses it: the error output
    the model gets, the failed events' errors and runcast's log lines joined."""
    run = make_run(("c1", "notify", "{}"))
    recorder = Recorder()
    caplog.set_level(logging.INFO, logger="runcast")
    async with automation_for(webhooks={"notify": url}, webhook_retries=0) as automation:
        async with asyncio.timeout(5):
            outcome = await automation.run_action(run, recorder)
    assert isinstance(outcome, Submit)
    error: str = orjson.loads(outcome.tool_outputs[0].output)["error"]
    failed = [d["error"] for n, d in recorder.events if n == "runcast.tool_call.failed"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("runcast"))
    return error, failed, logged


@pytest.mark.asyncio
async def test_a_webhook_query_value_or_userinfo_quoted_back_never_leaves_the_process(
    receiver: tuple[str, web.Application],
    automation_for: AutomationFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A receiver refusing the token of its URL quotes it: the bare value reached the model's
    # output, the failed event and the log (only the whole URL and its path were scrubbed).
    base = receiver[0].replace("http://", "http://hookuser:USERINFO-SECRET@")
    url = f"{base}/refuses?token=QUERY%2BSECRET12345&v=1"
    error, failed, logged = await _refused_once(automation_for, url, caplog)
    # A value under MIN_MASKED_CHARS is not masked by value: it would mask ordinary text.
    assert error == "webhook of tool 'notify' answered HTTP 403: invalid token *** (v1) for ***:***"
    assert failed == [error]
    assert "invalid token ***" in logged
    for secret in ("QUERY+SECRET12345", "SECRET12345", "USERINFO-SECRET", "hookuser"):
        assert secret not in logged and secret not in error


@pytest.mark.asyncio
async def test_a_webhook_userinfo_quoted_back_as_basic_credentials_never_leaves_the_process(
    receiver: tuple[str, web.Application],
    automation_for: AutomationFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The userinfo goes as `Authorization: Basic base64(user:password)`: a receiver quoting the
    # header it refused handed the base64 (the password, decoded by anyone) to the model, the
    # failed event and the log.
    url = receiver[0].replace("http://", "http://hookuser:USERINFO-SECRET@") + "/refuses-auth"
    encoded = base64.b64encode(b"hookuser:USERINFO-SECRET").decode()
    error, failed, logged = await _refused_once(automation_for, url, caplog)
    assert error == "webhook of tool 'notify' answered HTTP 403: refused: ***"
    assert failed == [error]
    assert "refused: ***" in logged and encoded not in logged


@pytest.mark.asyncio
async def test_ordinary_query_values_of_a_webhook_url_are_not_masked_in_its_answers(
    receiver: tuple[str, web.Application],
    automation_for: AutomationFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every query value of 4 characters or more was taken for a credential: with
    # ?version=2024-06-01&format=json, a receiver's "api version 2024-06-01" reached the model as
    # "api version ***". A value named as a credential, or long enough to be a token, still is.
    url = f"{receiver[0]}/refuses?token=QUERY%2BSECRET12345&v=2024-06-01&format=json"
    error, _, _ = await _refused_once(automation_for, url, caplog)
    assert error.startswith("webhook of tool 'notify' answered HTTP 403: invalid token *** ")
    assert "(v2024-06-01)" in error


def test_signature_format_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"name":"get_weather"}'
    expected = hmac.new(SECRET.encode(), b"1730000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1730000000, body) == f"v1={expected}"


def test_verify_signature() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, 1000, body)
    assert verify_signature(SECRET, "1000", body, header, now=1000)
    assert verify_signature(SECRET.encode(), "1000", body, header, now=1200)
    assert verify_signature(SECRET, "1000", body, f"v1=deadbeef, {header}", now=1000)
    assert not verify_signature("other", "1000", body, header, now=1000)
    assert not verify_signature(SECRET, "1000", b'{"a":2}', header, now=1000)
    assert not verify_signature(SECRET, "1001", body, header, now=1000)
    assert not verify_signature(SECRET, "1000", body, header, now=1301)  # stale: replay bound
    assert verify_signature(SECRET, "1000", body, header, tolerance=None, now=10_000)
    assert not verify_signature(SECRET, "not-a-number", body, header, now=1000)
    assert not verify_signature(SECRET, "1000", body, "", now=1000)


RAW_ANSWERS = {
    "a 500": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
    "not HTTP": b"\x00\x01\x02 garbage not http \xff\r\n\r\n",
    "a header line past 8 KiB": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
}


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", RAW_ANSWERS.values(), ids=RAW_ANSWERS.keys())
async def test_a_failing_webhook_is_named_without_its_credentials_or_its_bytes(
    answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # The error text becomes the tool's output (the model reads it), a runcast.tool_call.failed
    # event (every subscriber reads it) and a log line: it named the whole URL, userinfo and
    # query token included, and for an answer that is not HTTP quoted aiohttp's text (its bytes,
    # a status the webhook never sent) after three chained tracebacks. It names the tool now.
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://user:URL-PASSWORD@127.0.0.1:{port}/hook?token=QUERY-TOKEN"
    call = ToolCall(
        run_id="run_1", thread_id="th_1", tool_call_id="call_1", name="f", arguments={},
        arguments_raw="{}",
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            webhook = WebhookHandler(url, session, secret=SECRET, retries=0)
            with pytest.raises(ToolError) as raised:
                await webhook(call)
    finally:
        server.close()
        await server.wait_closed()
    message = str(raised.value)
    assert "webhook of tool 'f'" in message
    for secret in ("127.0.0.1", "/hook", "URL-PASSWORD", "QUERY-TOKEN", "garbage", "aaaa"):
        assert secret not in message
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.asyncio
async def test_many_refused_calls_of_one_run_write_a_few_log_lines(
    receiver: tuple[str, web.Application],
    automation_for: AutomationFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each attempt wrote an INFO line and each failed call a WARNING: 500 calls, 1,004 lines.
    run = make_run(*((f"c{i}", "notify", "{}") for i in range(30)))
    caplog.set_level(logging.INFO, logger="runcast")
    url = f"{receiver[0]}/rejected"
    async with automation_for(webhooks={"notify": url}, webhook_retries=0) as automation:
        async with asyncio.timeout(10):
            outcome = await automation.run_action(run, Recorder())
    assert isinstance(outcome, Submit) and len(outcome.tool_outputs) == 30
    attempts = [r for r in caplog.records if r.getMessage().startswith("webhook ")]
    failed = [r for r in caplog.records if "tool call of run" in r.getMessage()]
    assert len(attempts) == len(failed) == 2, [r.getMessage() for r in caplog.records]
