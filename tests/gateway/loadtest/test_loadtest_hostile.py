"""Targets whose bytes no well-behaved server sends: each costs the runs it touches, never the
load, its summary or its report. Real aiohttp servers on 127.0.0.1 answering raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from loadtest_helpers import check_report, serving

from gateway.errors import ConfigError
from gateway.loadtest import LoadSettings, accounting, subscribers
from gateway.loadtest.accounting import RunRecord
from gateway.loadtest.cli import run_async
from gateway.loadtest.driver import TargetLoad
from gateway.loadtest.protocols.chat import ChatTracker
from gateway.loadtest.report import render_table
from gateway.loadtest.subscribers import Subscriber
from gateway.mock import MockSettings

SSE = "text/event-stream"
DEEP = b"[" * 200_000 + b"]" * 200_000
"""Nesting deeper than Python's stack: msgspec raises RecursionError, not DecodeError."""

ASSISTANTS_RUN = (
    b'event: thread.run.created\ndata: {"id":"run_1","status":"queued"}\n\n'
    b'event: thread.message.delta\ndata: {"delta":{"content":[{"text":{"value":"hi"}}]}}\n\n'
    b'event: thread.run.completed\ndata: {"id":"run_1","status":"completed"}\n\n'
    b"event: done\ndata: [DONE]\n\n"
)
RESPONSES_RUN = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}'
    b"\n\n"
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1",'
    b'"status":"completed","output":[]}}\n\n'
)
CHAT_RUN = (
    b'data: {"id":"c1","choices":[{"delta":{"content":"hi"}}]}\n\n'
    b'data: {"id":"c1","choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
STREAMS = {
    "/v1/threads/{thread}/runs": ASSISTANTS_RUN,
    "/v1/responses": RESPONSES_RUN,
    "/v1/chat/completions": CHAT_RUN,
}
PATHS = {"assistants": "/v1/threads/{thread}/runs", "responses": "/v1/responses",
         "chat": "/v1/chat/completions"}  # fmt: skip
TOKENS_REQUIRED = web.json_response(
    {"error": {"code": "missing_token", "message": "x"}}, status=401
)


@contextlib.asynccontextmanager
async def hostile(
    answers: Mapping[str, bytes | web.Response], middleware: Any = None
) -> AsyncIterator[str]:
    """A server answering the load test's calls sanely (an assistant, threads, open channels,
    the protocols' streams above), except where ``answers`` (path -> SSE bytes or a response)
    says otherwise; its root URL."""
    threads = iter(range(1, 1_000_000))

    def answer(path: str, default: bytes | web.Response) -> web.Response:
        chosen = answers.get(path, default)
        if isinstance(chosen, web.Response):
            # A prepared response is sent once: answer each request with a copy.
            return web.Response(body=chosen.body, status=chosen.status, headers=chosen.headers)
        return web.Response(body=chosen, content_type=SSE)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/v1/assistants":
            return answer(path, web.json_response({"id": "asst_1"}))
        if path == "/v1/threads":
            return answer(path, web.json_response({"id": f"thread_{next(threads)}"}))
        if path == "/tokens":
            return answer(path, web.json_response({"token": "tok"}))
        if path == "/streams/threads/thread_loadtest_probe":
            return answer(path, b"")
        if path.startswith("/streams/"):
            return answer("/streams/", ASSISTANTS_RUN)
        if path.startswith("/v1/threads/") and path.endswith("/runs"):
            await asyncio.sleep(0.05)  # subscribers are in before the run
            return answer("/v1/threads/{thread}/runs", ASSISTANTS_RUN)
        if path in STREAMS:
            return answer(path, STREAMS[path])
        return web.json_response({}, status=404)

    app = web.Application(middlewares=[] if middleware is None else [middleware])
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def load(url: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "runs": 2, "concurrency": 1, "subscribers_per_run": 0, "idle_timeout": 5,
        "progress_interval": 0,
    }  # fmt: skip
    report, _ = await run_async(LoadSettings(target=url, **{**base, **fields}))
    check_report(report)
    return report


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["assistants", "responses", "chat"])
async def test_an_event_nested_past_the_stack_is_a_bad_event_not_a_crash(protocol: str) -> None:
    # RecursionError escaped every tracker (they caught DecodeError only): the load died with an
    # ExceptionGroup, no table, no report. Now it is an event that does not parse, as `{bad`:
    # its run fails as `protocol`, the load goes on.
    path = PATHS[protocol]
    deep = b"event: thread.message.delta\n" if protocol == "assistants" else b""
    deep += b'data: {"type":"x","x":' + DEEP + b"}\n\n"
    async with hostile({path: deep + STREAMS[path]}) as url:
        report = await load(url, protocol=protocol)
    assert report["runs"]["outcomes"] == {"protocol": 2}
    assert "maximum recursion depth" in report["error_details"]["protocol"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocol", "garbage"),
    [
        ("chat", b"data: \xff\xfe\x00garbage\x00\n\n"),
        ("chat", b'data: {"id":5,"choices":"x"}\n\n'),
        ("responses", b"data: \xff\xfe\x00garbage\x00\n\n"),
        ("responses", b'event: response.created\ndata: {"type":"response.created","response":7}\n\n'),
        ("assistants", b"event: thread.message.delta\ndata: \xff\xfe\x00garbage\n\n"),
        ("assistants", b'event: thread.run.created\ndata: {"id":5}\n\n'),
    ],
)  # fmt: skip
async def test_events_that_do_not_decode_fail_their_run(protocol: str, garbage: bytes) -> None:
    # Skipped silently, they let a load of hostile bytes pass (a chat stream of garbage then a
    # normal answer was `completed`, exit 0); an OpenAI SDK raises on them. The subscriber's copy
    # fails the same way.
    path = PATHS[protocol]
    async with hostile(
        {path: garbage + STREAMS[path], "/streams/": garbage + STREAMS[path]}
    ) as url:
        report = await load(
            url, protocol=protocol, subscribers_per_run=int(protocol == "assistants")
        )
    assert report["runs"]["outcomes"] == {"protocol": 2}
    assert "does not decode" in report["error_details"]["protocol"]
    if protocol == "assistants":
        assert report["errors"]["subscriber_protocol"] == 2
        assert "does not decode" in report["error_details"]["subscriber_protocol"]


@pytest.mark.asyncio
async def test_responses_events_of_the_wrong_shape_fail_their_run() -> None:
    # "response": "nope" in response.created names no id (as any event that does not parse);
    # a response.completed whose output is an object is the stream's last word unreadable.
    created = b'event: response.created\ndata: {"type":"response.created","response":"nope"}\n\n'
    completed = (
        b'event: response.completed\ndata: {"type":"response.completed",'
        b'"response":{"output":{"a":1}}}\n\n'
    )
    async with hostile({"/v1/responses": created + completed}) as url:
        report = await load(url, protocol="responses")
    assert report["runs"]["outcomes"] == {"protocol": 2}


BAD_ID = "../../x?y=1#frag"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocol", "answers", "kind", "detail"),
    [
        (
            "chat",
            {"/v1/chat/completions": web.Response(
                body=CHAT_RUN, content_type=SSE, headers={"runcast-completion-id": BAD_ID})},
            "protocol",
            f"runcast-completion-id header {BAD_ID!r} is no id",
        ),
        (
            "chat",
            {"/v1/chat/completions": CHAT_RUN.replace(b'"c1"', b'"../evil"')},
            "protocol",
            "channel id from the stream '../evil' is no id",
        ),
        (
            "responses",
            {"/v1/responses": RESPONSES_RUN.replace(b'"resp_1"', b'"a?b"')},
            "protocol",
            "channel id from the stream 'a?b' is no id",
        ),
        (
            "responses",
            {"/v1/responses": web.Response(
                body=RESPONSES_RUN, content_type=SSE, headers={"runcast-response-id": ".."})},
            "protocol",
            "runcast-response-id header '..' is no id",
        ),
        (
            "assistants",
            {"/v1/threads": web.json_response({"id": "../../evil?x=1#"})},
            "setup_bad_answer",
            "thread id '../../evil?x=1#' is no id",
        ),
        (
            "assistants",
            {"/v1/threads/{thread}/runs": ASSISTANTS_RUN.replace(b'"run_1"', b'"r/../x"')},
            "protocol",
            "thread.run.created run id 'r/../x' is no id",
        ),
    ],
)  # fmt: skip
async def test_ids_the_target_names_are_checked_before_any_url_is_built(
    protocol: str, answers: Mapping[str, bytes | web.Response], kind: str, detail: str
) -> None:
    # An id put into a URL unchecked steered the load: `../../x?y=1#frag` made the subscriber GET
    # /x?y=1 (its ?token= in the fragment), a thread id made the run POST /evil?x=1.
    asked: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        asked.append(request.raw_path)
        return await handler(request)

    async with hostile(answers, middleware=record) as url:
        report = await load(url, protocol=protocol, subscribers_per_run=1)
    assert report["runs"]["outcomes"] == {kind: 2}
    assert report["error_details"][kind].startswith(detail)
    allowed = ("/v1/", "/streams/", "/tokens")
    assert [p for p in asked if not p.startswith(allowed) or ".." in p or "?x" in p] == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocol", "more"),
    [
        ("chat", b'data: {"id":"c1","choices":[{"delta":{"content":"more"}}]}\n\n'),
        ("responses", RESPONSES_RUN.split(b"\n\n")[1] + b"\n\n"),
    ],
)
async def test_a_run_completes_at_its_closing_event_whatever_follows(
    protocol: str, more: bytes
) -> None:
    # A server writing on after [DONE] (response.completed) held each run to --run-timeout and
    # counted it `timeout`; the OpenAI SDK stops there.
    path = PATHS[protocol]

    @web.middleware
    async def endless(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != path:
            return await handler(request)
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": SSE})
        await response.prepare(request)
        await response.write(STREAMS[path])
        while True:
            await response.write(more)
            await asyncio.sleep(0.01)

    began = time.perf_counter()
    async with hostile({}, middleware=endless) as url:
        report = await load(url, protocol=protocol, run_timeout=3)
    assert report["runs"]["outcomes"] == {"completed": 2}
    assert time.perf_counter() - began < 2.5

    # A body that ends after its closing event, as a server's does, still goes back to the
    # pool: one user's runs share one connection.
    peers: set[object] = set()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == path and request.transport is not None:
            peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    async with hostile({}, middleware=record) as url:
        report = await load(url, protocol=protocol, runs=5)
    assert report["runs"]["outcomes"] == {"completed": 5}
    assert len(peers) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stream", "fields", "kind", "detail"),
    [
        (
            b'data: {"id":"c1","choices":[{"delta":{"content":"' + b"a" * (17 << 20) + b'"}}]}\n\n',
            {},
            "protocol",
            "SSE line/event exceeds the 16777216-byte limit",
        ),
        (CHAT_RUN.removesuffix(b"data: [DONE]\n\n"), {}, "truncated", "the stream ended before"),
        (CHAT_RUN.replace(b'"stop"', b"null"), {}, "truncated", "the stream ended without"),
        (None, {"idle_timeout": 0.3}, "timeout", "no data for 0.3 s (--idle-timeout)"),
        (None, {"run_timeout": 0.3}, "timeout", "the run was not over in 0.3 s (--run-timeout)"),
    ],
)  # fmt: skip
async def test_failed_runs_say_what_happened(
    stream: bytes | None, fields: dict[str, Any], kind: str, detail: str
) -> None:
    # `protocol` (an event over the size limit), `truncated` and `timeout` came with empty
    # details: the report did not say which limit or what was missing.
    @web.middleware
    async def stall(request: web.Request, handler: Any) -> web.StreamResponse:
        if stream is not None or request.path != PATHS["chat"]:
            return await handler(request)
        response = web.StreamResponse(headers={"Content-Type": SSE})
        await response.prepare(request)
        await response.write(CHAT_RUN.split(b"\n\n")[0] + b"\n\n")
        await asyncio.sleep(5)
        return response

    answers = {} if stream is None else {PATHS["chat"]: stream}
    async with hostile(answers, middleware=stall) as url:
        report = await load(url, protocol="chat", **fields)
    assert report["runs"]["outcomes"] == {kind: 2}
    assert report["error_details"][kind].startswith(detail), report["error_details"]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"garbage", b'{"token": 5}', b'{"token": ' + DEEP + b"}"])
async def test_a_subscribe_token_that_does_not_parse_fails_the_run(body: bytes) -> None:
    answers = {
        "/streams/threads/thread_loadtest_probe": TOKENS_REQUIRED,
        "/tokens": web.Response(body=body, content_type="application/json"),
    }
    async with hostile(answers) as url:
        report = await load(url, api_key="k", subscribers_per_run=1)
    assert report["runs"]["outcomes"] == {"setup_bad_answer": 2}
    assert report["error_details"]["setup_bad_answer"].startswith("POST /tokens: ")


@pytest.mark.asyncio
async def test_a_thread_answer_nested_past_the_stack_fails_the_run() -> None:
    deep = web.Response(body=b'{"x":' + DEEP + b"}", content_type="application/json")
    async with hostile({"/v1/threads": deep}) as url:
        report = await load(url)
    assert report["runs"]["outcomes"] == {"setup_bad_answer": 2}


@pytest.mark.asyncio
async def test_an_assistant_answer_nested_past_the_stack_is_one_config_line() -> None:
    deep = web.Response(body=b'{"x":' + DEEP + b"}", content_type="application/json")
    async with hostile({"/v1/assistants": deep}) as url:
        with pytest.raises(ConfigError, match="refused the load test's setup"):
            await load(url)


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_a_channel_nested_past_the_stack_is_the_subscribers_error(transport: str) -> None:
    # subscribers.py promises that a subscriber's failure is never raised; this one took the
    # whole load down. SSE from the hostile server; WebSocket frames through a real gateway
    # whose simulator streams the deep event.
    if transport == "sse":
        channel = b'event: thread.message.delta\ndata: {"x":' + DEEP + b"}\n\n"
        async with hostile({"/streams/": channel}) as url:
            report = await load(url, subscribers_per_run=1)
        assert report["runs"]["completed"] == 2
        assert report["errors"] == {"subscriber_protocol": 2}
        return
    simulator = MockSettings(deltas=2, seed=3)

    @web.middleware
    async def deep_first(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/chat/completions":
            return await handler(request)
        response = web.StreamResponse(headers={"Content-Type": SSE})
        await response.prepare(request)
        await response.write(b'data: {"id":"c1","x":' + DEEP[:20_000] + b"}\n\n" + CHAT_RUN)
        await response.write_eof()
        return response

    async with serving(simulator, mock_middleware=deep_first) as (url, _, _):
        report = await load(url, protocol="chat", subscribers_per_run=1, subscriber_transport="ws")
    # The chunk does not decode: the creator's run fails on it, and so does a WebSocket copy
    # that got it (the creator stops reading there: how the gateway ends the others' copies is
    # its affair), no crash.
    assert report["runs"]["outcomes"] == {"protocol": 2}
    assert report["errors"]["subscriber_protocol"] >= 1
    assert "subscriber_unexpected_error" not in report["errors"]


@pytest.mark.asyncio
async def test_what_no_branch_foresaw_fails_the_run_not_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The last resort: an exception no outcome names is a failed run of its own kind, with the
    # exception in the details; in a subscriber, that subscriber's error.
    def broken(self: ChatTracker, name: str, data: bytes) -> Any:
        raise ValueError("boom")

    async with hostile({}) as url:
        monkeypatch.setattr(ChatTracker, "feed", broken)
        report = await load(url, protocol="chat")
    assert report["runs"]["outcomes"] == {"unexpected_error": 2}
    assert report["error_details"] == {"unexpected_error": "ValueError: boom"}

    monkeypatch.undo()
    monkeypatch.setattr(Subscriber, "_on_event", broken)
    async with serving(MockSettings(deltas=2, seed=3)) as (url, _, _):
        report = await load(url, protocol="chat", subscribers_per_run=1)
    assert report["runs"]["completed"] == 2
    assert report["errors"] == {"subscriber_unexpected_error": 2}
    assert report["error_details"]["subscriber_unexpected_error"] == "ValueError: boom"


@pytest.mark.asyncio
async def test_hostile_compare_and_worker_targets_still_give_the_report(tmp_path: Path) -> None:
    # Only the --compare target is bad; then a --processes 2 load whose tokens do not parse:
    # both end with the table on stdout, the JSON report and exit 1, no traceback.
    chat_deep = b'data: {"id":"c","x":' + DEEP + b"}\n\n"
    answers = {
        "/v1/chat/completions": chat_deep,
        "/streams/threads/thread_loadtest_probe": TOKENS_REQUIRED,
        "/tokens": web.Response(body=b"garbage", content_type="application/json"),
    }
    async with hostile({}) as good, hostile(answers) as bad:
        for args in (
            ["--target", good, "--compare", bad, "--protocol", "chat", "--runs", "2"],
            ["--target", bad, "--api-key", "k", "--processes", "2", "--concurrency", "2",
             "--runs", "4"],
        ):  # fmt: skip
            out = tmp_path / "report.json"
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "gateway.cli", "loadtest", *args),
                *("--json", str(out), "--progress-interval", "0", "--subscribers-per-run"),
                "0" if "chat" in args else "1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 1, stderr.decode()
            assert b"Traceback" not in stderr
            assert b"\nverdict     " in stdout
            report = json.loads(out.read_text())
            check_report(report)
            assert not report["verdict"]["passed"]


@pytest.mark.asyncio
async def test_a_channel_delivering_events_out_of_order_fails_the_gate() -> None:
    # The same events as the creator's, the first two swapped: no gap, no duplicate, and the
    # gate passed. A client applying them in that order would build another run.
    events = [event + b"\n\n" for event in ASSISTANTS_RUN.split(b"\n\n") if event]
    events[0], events[1] = events[1], events[0]
    async with hostile({"/streams/": b"".join(events)}) as url:
        report = await load(url, subscribers_per_run=2)
    subscribers = report["subscribers"]
    assert (subscribers["gaps"], subscribers["duplicates"], subscribers["reordered"]) == (0, 0, 8)
    assert report["errors"] == {"reordered": 8}
    assert report["error_rate"] == 1.0  # each run completed, none reached its subscribers whole
    assert report["verdict"]["reasons"] == [
        "error rate 100.00% > --max-error-rate 0.00%",
        "8 gaps, duplicates or reordered events in subscribers' copies",
    ]
    assert "0 gaps, 0 duplicates, 8 reordered" in render_table(report)


@pytest.mark.asyncio
async def test_redirects_are_not_followed_the_load_stays_on_its_targets() -> None:
    # A target answering 302 to another server: the load followed it (traffic to a URL it was
    # not given) and blamed the target as unreachable. Now each 3xx is that call's failure, and
    # says where it pointed; the other server gets nothing.
    elsewhere: list[str] = []

    async def count(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.Response(body=CHAT_RUN, content_type=SSE)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", count)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    away = f"http://127.0.0.1:{runner.addresses[0][1]}/x"
    redirect = web.Response(status=302, headers={"Location": away})
    detail = f"redirect to {away} not followed: the load goes only to the URLs it is given"
    try:
        for protocol, path in PATHS.items():
            async with hostile({path: redirect}) as url:
                report = await load(url, protocol=protocol)
            assert report["runs"]["outcomes"] == {"http_302": 2}, protocol
            assert report["error_details"] == {"http_302": detail}
        async with hostile({"/v1/threads": redirect}) as url:
            report = await load(url)
        assert report["runs"]["outcomes"] == {"setup_http_302": 2}
        for transport in ("sse", "ws"):
            async with hostile({"/streams/": redirect}) as url:
                report = await load(url, subscribers_per_run=1, subscriber_transport=transport)
            assert report["runs"]["completed"] == 2
            assert report["errors"] == {"subscriber_http_302": 2}, transport
            assert report["error_details"] == {"subscriber_http_302": detail}
    finally:
        await runner.cleanup()
    assert elsewhere == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "answer", "kind"),
    [
        ("/v1/chat/completions", web.Response(status=302, headers={"Location": "/x"}), "http_302"),
        ("/v1/responses", web.json_response({"error": {}}, status=403), "http_403"),
        ("/v1/threads", web.json_response({"error": {}}, status=401), "setup_http_401"),
    ],
)
async def test_a_load_aimed_wrong_is_not_hammered_and_gives_up(
    path: str, answer: web.Response, kind: str
) -> None:
    # A target answering every run with a redirect (or a 401, 404) was hammered: 36,000 runs in
    # 3 s from 5 users. Each such answer now pauses the users as a refused connection does, and
    # after --give-up-after of nothing else the load stops and says why.
    protocol = {"/v1/threads": "assistants", "/v1/responses": "responses"}.get(path, "chat")
    async with hostile({path: answer}) as url:
        report = await load(
            url, protocol=protocol, runs=None, duration=30, concurrency=4, give_up=1.0
        )
    failed = report["runs"]["outcomes"][kind]
    assert 0 < failed <= 4 * 12, failed
    assert report["elapsed_s"] < 10
    assert any(
        reason.endswith("for 1 s: load stopped") for reason in report["verdict"]["reasons"]
    ), report["verdict"]


@pytest.mark.asyncio
async def test_a_stream_that_never_ends_keeps_nothing_per_event_and_is_cut_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each creator kept a time, a digest and a segment per event, read by nothing without
    # subscribers or --compare: 10 MB/s against a stream that never ends, and the Counter built
    # over them at the deadline made the cut seconds late (--duration 30 took 35.9 s).
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": SSE})
        await response.prepare(request)
        chunk = b'data: {"id":"c1","choices":[{"delta":{"content":"hi"}}]}\n\n' * 200
        while True:
            await response.write(chunk)

    records: list[RunRecord] = []
    account = TargetLoad._account

    def spy(self: TargetLoad, run: RunRecord, *args: Any) -> None:
        records.append(run)
        account(self, run, *args)

    monkeypatch.setattr(TargetLoad, "_account", spy)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        started = time.perf_counter()
        report = await load(url, protocol="chat", runs=None, duration=1.0, concurrency=2)
        took = time.perf_counter() - started
    finally:
        await runner.cleanup()
    assert report["runs"]["cut"] == 2 and report["events"]["creator"] > 1000
    assert [(len(r.times), len(r.digests), len(r.segments)) for r in records] == [(0, 0, 0)] * 2
    # Cut on time (the slack is a loaded CI machine's; what kept it seconds late is gone above).
    assert report["elapsed_s"] < 2.5 and took < 4


@pytest.mark.asyncio
async def test_copies_past_the_kept_events_are_counted_not_matched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At most MAX_KEPT_EVENTS per copy are kept (100,000: cut to 5 here); past it a copy is
    # counted and said to be so, not matched (its gaps could not be told).
    monkeypatch.setattr(accounting, "MAX_KEPT_EVENTS", 5)
    monkeypatch.setattr(subscribers, "MAX_KEPT_EVENTS", 5)
    async with serving(MockSettings(deltas=8, seed=3)) as (url, _, _):
        report = await load(url, subscribers_per_run=1)
    assert report["runs"]["completed"] == 2
    assert report["events"]["unkept"] == report["events"]["creator"] - 2 * 5
    assert report["subscribers"]["unmatched"] == 2
    assert report["subscribers"]["deliveries"] == report["subscribers"]["gaps"] == 0
    assert report["verdict"]["passed"]
    assert (
        f"({report['events']['unkept']:,} creator events past the 100,000 kept per run were "
        "counted, not timed or matched; 2 subscribers' copies not matched)"
    ) in render_table(report)
