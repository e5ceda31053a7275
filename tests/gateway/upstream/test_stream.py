"""RunStream over real sockets: fixture streams in many chunkings, ends, truncation, timeouts."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from gateway.errors import StreamTooLarge, StreamTruncated, UpstreamTimeout
from gateway.upstream import StreamItem, UpstreamClient
from parsers.assistants import (
    DoneEvent,
    ErrorEvent,
    MessageDeltaEvent,
    RunEvent,
    RunStepDeltaEvent,
    UnknownEvent,
)
from parsers.errors import EventTooLarge, RemoteProtocolError
from parsers.sse import SSEDecoder

from .servers import (
    COMMENTS,
    FakeUpstream,
    RawServerFactory,
    chunked,
    collect,
    fixture_bytes,
    loop_turns,
    make_settings,
    reply_gzip,
    reply_json,
    reply_sse,
    turns_between_reads,
    until_close,
)

RUNS = "/threads/thread_9Qx/runs"
SUBMIT = "/threads/thread_9Qx/runs/run_7Lm/submit_tool_outputs"
FIXTURES = [
    "A-text.sse",
    "B1-requires-action.sse",
    "B2-after-submit.sse",
    "C-error-event.sse",
    "F-run-failed.sse",
]
CHUNKINGS = [None, [1], [7], [3, 250, 1, 64], [4096]]


def wire_events(raw: bytes) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    return [(e.event, e.data_bytes) for e in decoder.feed(raw) + decoder.close()]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["whole", "1", "7", "mixed", "4k"])
async def test_fixture_streams_relay_every_event_in_any_chunking(
    upstream: FakeUpstream, client: UpstreamClient, name: str, chunks: list[int] | None
) -> None:
    raw = fixture_bytes(name)
    upstream.route("POST", RUNS, reply_sse(raw, chunks=chunks))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
    assert [(i.name, i.data_bytes) for i in items] == wire_events(raw)
    assert all(i.decode_error is None for i in items)
    assert all(i.event.event == i.name for i in items)
    assert stream.run_id == "run_7Lm"
    assert stream.thread_id == "thread_9Qx"
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_text_stream_types_and_end(upstream: FakeUpstream, client: UpstreamClient) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse"), chunks=[5]))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
        assert stream.response.status == 200
    kinds = [type(i.event) for i in items]
    assert kinds[0] is RunEvent
    assert kinds.count(MessageDeltaEvent) == 3
    assert kinds[-1] is DoneEvent
    assert stream.done
    assert stream.last_status == "completed"


@pytest.mark.asyncio
async def test_requires_action_stream_carries_the_tool_calls(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("B1-requires-action.sse"), chunks=[64]))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
    assert sum(isinstance(i.event, RunStepDeltaEvent) for i in items) == 3
    action = items[-2].event
    assert isinstance(action, RunEvent) and action.data.status == "requires_action"
    assert action.data.required_action is not None
    call = action.data.required_action.submit_tool_outputs.tool_calls[0]
    assert (call.id, call.function.name) == ("call_C3", "get_weather")
    assert stream.last_status == "requires_action"


@pytest.mark.asyncio
async def test_error_event_is_yielded_and_eof_after_it_is_a_normal_end(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # C-error-event.sse has no `done`: the server closes after the error (spec §2.4).
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("C-error-event.sse")))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
    last = items[-1].event
    assert isinstance(last, ErrorEvent)
    assert last.data.code == "server_error"
    assert stream.last_error is last
    assert not stream.done
    assert stream.last_status == "in_progress"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["A-text.sse", "B1-requires-action.sse", "F-run-failed.sse"])
async def test_eof_without_done_after_terminal_or_requires_action_is_a_normal_end(
    upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    raw = fixture_bytes(name)
    without_done = raw[: raw.index(b"event: done")]
    upstream.route("POST", RUNS, reply_sse(without_done, chunks=[100]))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
    assert [(i.name, i.data_bytes) for i in items] == wire_events(without_done)
    assert not stream.done


def cut_after(raw: bytes, event_name: bytes, extra: int = 0) -> bytes:
    """``raw`` up to the blank line ending the last ``event_name`` event, plus ``extra`` bytes."""
    start = raw.rindex(b"event: " + event_name + b"\n")
    end = raw.index(b"\n\n", start) + 2
    return raw[: end + extra]


@pytest.mark.asyncio
@pytest.mark.parametrize("partial", [0, 30], ids=["between-events", "mid-event"])
async def test_connection_cut_mid_chunked_body_is_truncation_with_last_status(
    raw_server: RawServerFactory, partial: int
) -> None:
    part = cut_after(fixture_bytes("A-text.sse"), b"thread.message.delta", partial)
    server = await raw_server(lambda head, body: chunked(part[:1000], part[1000:], final=False))
    async with UpstreamClient(make_settings(server.base_url)) as client:
        stream = client.stream_run("thread_9Qx", {"assistant_id": "asst_42"})
        seen: list[StreamItem] = []
        with pytest.raises(StreamTruncated) as info:
            async with stream:
                async for item in stream:
                    seen.append(item)
        assert client.statistics().open_responses == 0
    exc = info.value
    assert (exc.last_status, exc.run_id, exc.thread_id) == ("in_progress", "run_7Lm", "thread_9Qx")
    assert exc.partial_event is bool(partial)
    assert exc.__cause__ is not None  # the connection error behind it
    assert [i.name for i in seen] == [e for e, _ in wire_events(part)]
    assert len(server.requests) == 1  # a stream is never re-sent


@pytest.mark.asyncio
async def test_clean_eof_mid_run_is_truncation(raw_server: RawServerFactory) -> None:
    part = cut_after(fixture_bytes("B2-after-submit.sse"), b"thread.run.in_progress", 12)
    server = await raw_server(lambda head, body: until_close(part))
    names: list[str] = []
    async with UpstreamClient(make_settings(server.base_url)) as client:
        with pytest.raises(StreamTruncated) as info:
            async with client.stream_submit_tool_outputs(
                "thread_9Qx", "run_7Lm", [{"tool_call_id": "call_C3", "output": "4"}]
            ) as stream:
                async for item in stream:
                    names.append(item.name)
    assert names[-1] == "thread.run.in_progress"
    assert info.value.last_status == "in_progress"
    assert info.value.partial_event is True
    assert info.value.__cause__ is None


@pytest.mark.asyncio
@pytest.mark.parametrize("chunks", [None, [1], [64]], ids=["whole", "1", "64"])
async def test_done_before_the_runs_last_word_is_truncation(
    upstream: FakeUpstream, client: UpstreamClient, chunks: list[int] | None
) -> None:
    # A `done` while the run is in progress ends the HTTP stream, not the run (spec §2.1): it
    # is not handed out, and what follows it is not read (the completed run below included).
    raw = fixture_bytes("A-text.sse")
    before = cut_after(raw, b"thread.message.delta")
    upstream.route(
        "POST", RUNS, reply_sse(before + b"event: done\ndata: [DONE]\n\n" + raw, chunks=chunks)
    )
    names: list[str] = []
    with pytest.raises(StreamTruncated) as info:
        async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
            async for item in stream:
                names.append(item.name)
    assert names == [e for e, _ in wire_events(before)]
    assert not stream.done
    exc = info.value
    assert exc.early_done is True and exc.partial_event is False
    assert (exc.last_status, exc.run_id, exc.thread_id) == ("in_progress", "run_7Lm", "thread_9Qx")
    assert "sent 'done' before the run ended" in str(exc)
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("last_word", [b"thread.run.requires_action", b"error"])
async def test_done_after_requires_action_or_an_error_event_is_an_end(
    upstream: FakeUpstream, client: UpstreamClient, last_word: bytes
) -> None:
    name = "B1-requires-action.sse" if last_word != b"error" else "C-error-event.sse"
    body = cut_after(fixture_bytes(name), last_word) + b"event: done\ndata: [DONE]\n\n"
    upstream.route("POST", RUNS, reply_sse(body, chunks=[7]))
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        items = await collect(stream)
    assert [(i.name, i.data_bytes) for i in items] == wire_events(body)
    assert isinstance(items[-1].event, DoneEvent)
    assert stream.done


@pytest.mark.asyncio
async def test_eof_before_any_run_event_is_truncation_with_known_ids(
    raw_server: RawServerFactory,
) -> None:
    server = await raw_server(lambda head, body: until_close(b": keep-alive\n\n"))
    async with UpstreamClient(make_settings(server.base_url)) as client:
        with pytest.raises(StreamTruncated) as info:
            async with client.stream_submit_tool_outputs("thread_9Qx", "run_7Lm", []) as stream:
                async for item in stream:
                    pytest.fail(f"unexpected {item}")
    assert (info.value.last_status, info.value.run_id) == (None, "run_7Lm")
    assert info.value.thread_id == "thread_9Qx"


@pytest.mark.asyncio
async def test_first_byte_timeout_after_headers(
    upstream: FakeUpstream, short_client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse"), stall_before=2.0))
    async with short_client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        with pytest.raises(UpstreamTimeout) as info:
            await collect(stream)
    assert (info.value.phase, info.value.seconds) == ("first_byte", 0.3)
    assert len(upstream.requests) == 1


@pytest.mark.asyncio
async def test_idle_timeout_mid_stream(
    upstream: FakeUpstream, short_client: UpstreamClient
) -> None:
    raw = fixture_bytes("A-text.sse")
    upstream.route("POST", RUNS, reply_sse(raw, stall_at=len(raw) // 2, stall_for=2.0))
    seen: list[str] = []
    async with short_client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        with pytest.raises(UpstreamTimeout) as info:
            async for item in stream:
                seen.append(item.name)
        assert stream.last_status == "in_progress"
    assert info.value.phase == "idle"
    assert "thread.run.created" in seen
    assert short_client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_slow_but_steady_stream_outlives_the_idle_timeout(upstream: FakeUpstream) -> None:
    # 5 pauses of 0.25 s: more than idle_timeout (1 s) in total, never more than it at once.
    raw = fixture_bytes("A-text.sse")
    pieces = len(raw) // 5 + 1

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(raw), pieces):
            await asyncio.sleep(0.25)
            await resp.write(raw[i : i + pieces])
        await resp.write_eof()
        return resp

    upstream.route("POST", RUNS, slow)
    settings = make_settings(upstream.base_url, first_byte_timeout=1.0, idle_timeout=1.0)
    async with (
        UpstreamClient(settings) as client,
        client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream,
    ):
        items = await collect(stream)
    assert isinstance(items[-1].event, DoneEvent)


@pytest.mark.asyncio
async def test_bad_payload_is_reported_not_fatal(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    body = (
        b'event: thread.run.created\ndata: {"id": 5, "object": "thread.run"\n\n'
        b'event: thread.future.thing\ndata: {"x":1}\n\n'
        b"event: ping\ndata:\n\n" + fixture_bytes("F-run-failed.sse")
    )
    upstream.route("POST", RUNS, reply_sse(body))
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        items = await collect(stream)
    bad, unknown = items[0], items[1]
    assert isinstance(bad.event, UnknownEvent) and bad.decode_error is not None
    assert bad.decode_error.event == "thread.run.created"
    assert bad.data_bytes == b'{"id": 5, "object": "thread.run"'
    assert isinstance(unknown.event, UnknownEvent) and unknown.decode_error is None
    assert [i.name for i in items[2:]] == ["thread.run.failed", "done"]  # ping skipped
    assert stream.last_status == "failed"


@pytest.mark.asyncio
async def test_events_after_done_are_ignored(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    body = fixture_bytes("F-run-failed.sse") + b"event: thread.run.created\ndata: {}\n\n"
    upstream.route("POST", RUNS, reply_sse(body))
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        names = [i.name async for i in stream]
    assert names == ["thread.run.failed", "done"]


@pytest.mark.asyncio
async def test_oversized_event_raises_event_too_large(upstream: FakeUpstream) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse")))
    settings = make_settings(upstream.base_url, max_event_bytes=256)
    async with UpstreamClient(settings) as client:
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
            with pytest.raises(EventTooLarge):
                await collect(stream)
            assert [i async for i in stream] == []  # over after the error
        assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_events_before_an_oversized_event_are_delivered(upstream: FakeUpstream) -> None:
    huge = b"event: thread.run.in_progress\ndata: " + b"x" * 900 + b"\n\n"
    upstream.route(
        "POST", RUNS, reply_sse(fixture_bytes("F-run-failed.sse").split(b"event: done")[0] + huge)
    )
    settings = make_settings(upstream.base_url, max_event_bytes=800)
    names = []
    async with (
        UpstreamClient(settings) as client,
        client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream,
    ):
        with pytest.raises(EventTooLarge):
            async for item in stream:
                names.append(item.name)
    assert names == ["thread.run.failed"]


@pytest.mark.asyncio
async def test_a_body_past_max_stream_bytes_is_cut_unless_the_run_had_ended(
    upstream: FakeUpstream,
) -> None:
    raw = fixture_bytes("A-text.sse")
    running = cut_after(raw, b"thread.message.delta")  # the run still going
    cap = len(running) // 2
    upstream.route("POST", RUNS, reply_sse(running, chunks=[200]))
    async with UpstreamClient(make_settings(upstream.base_url, max_stream_bytes=cap)) as client:
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
            with pytest.raises(StreamTooLarge, match=f"passed {cap} bytes"):
                await collect(stream)
            assert cap < stream.bytes_read <= len(running)
        assert client.statistics().open_responses == 0
    # The cap crossed by the read that brought the run's last word: a normal end, as at EOF.
    ended = raw[: raw.index(b"event: done")]  # ends with thread.run.completed
    upstream.route("POST", RUNS, reply_sse(ended, chunks=[200]))
    settings = make_settings(upstream.base_url, max_stream_bytes=len(ended) - 1)
    async with UpstreamClient(settings) as client:
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
            items = await collect(stream)
        assert [(i.name, i.data_bytes) for i in items] == wire_events(ended)


@pytest.mark.asyncio
async def test_leaving_early_releases_the_response(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse"), chunks=[50]))
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        async for _ in stream:
            assert client.statistics().open_responses == 1
            break
    assert client.statistics().open_responses == 0
    # the pool is still usable
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        assert isinstance((await collect(stream))[-1].event, DoneEvent)


@pytest.mark.asyncio
async def test_aclose_without_async_with(upstream: FakeUpstream, client: UpstreamClient) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse")))
    stream = client.stream_run("thread_9Qx", {"assistant_id": "a"})
    with pytest.raises(RuntimeError):
        await stream.__anext__()
    await stream.__aenter__()
    first = await stream.__anext__()
    assert first.name == "thread.run.created"
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_json_answer_to_a_streamed_call_is_a_protocol_error(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_json(200, {"id": "run_1", "object": "thread.run"}))
    with pytest.raises(RemoteProtocolError):
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}):
            pass
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_html_answer_to_a_streamed_call_is_a_protocol_error(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        # Headers, then a page that never ends: refused on the content type, not after a timeout.
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html><body>Bad gateway")
        await asyncio.sleep(30)
        return response

    upstream.route("POST", RUNS, html)
    with pytest.raises(RemoteProtocolError, match="text/html"):
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}):
            pass
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_thread_and_run_stream_learns_the_thread_from_thread_created(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    thread = b'event: thread.created\ndata: {"id":"thread_new","object":"thread","created_at":1,"metadata":{}}\n\n'
    upstream.route("POST", "/threads/runs", reply_sse(thread + b": no run yet\n\n"))
    names: list[str] = []
    with pytest.raises(StreamTruncated) as info:
        async with client.stream_thread_and_run({"assistant_id": "a"}) as stream:
            async for item in stream:
                names.append(item.name)
    assert names == ["thread.created"]
    assert info.value.thread_id == "thread_new"
    assert info.value.run_id is None


@pytest.mark.asyncio
async def test_streamed_thread_and_run_passes_the_query(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", "/threads/runs", reply_sse(fixture_bytes("A-text.sse")))
    async with client.stream_thread_and_run({"assistant_id": "a"}, query="x=1&y=2") as stream:
        names = [item.name async for item in stream]
    assert names[-1] == "done"
    (hit,) = upstream.hits("/threads/runs")
    assert hit.raw_query == "x=1&y=2"
    assert orjson.loads(hit.body) == {"assistant_id": "a", "stream": True}


@pytest.mark.asyncio
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["whole", "1", "7", "mixed", "4k"])
async def test_read_batch_hands_out_the_same_items_grouped_by_read(
    upstream: FakeUpstream, client: UpstreamClient, name: str, chunks: list[int] | None
) -> None:
    raw = fixture_bytes(name)
    upstream.route("POST", RUNS, reply_sse(raw, chunks=chunks))
    batches: list[list[StreamItem]] = []
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        while batch := await stream.read_batch():
            batches.append(batch)
        assert await stream.read_batch() == []
    items = [(i.name, i.data_bytes) for b in batches for i in b]
    assert items == wire_events(raw)
    if chunks is None:
        assert len(batches) < len(items)  # the body was written whole: events share reads


@pytest.mark.asyncio
async def test_read_batch_raises_a_truncation_after_the_items_before_it(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    raw = fixture_bytes("A-text.sse")
    cut = raw[: raw.index(b"event: thread.message.completed")]
    upstream.route("POST", RUNS, reply_sse(cut))
    got: list[StreamItem] = []
    async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
        with pytest.raises(StreamTruncated):
            while batch := await stream.read_batch():
                got.extend(batch)
    assert [(i.name, i.data_bytes) for i in got] == wire_events(cut)


@pytest.mark.asyncio
async def test_reads_without_items_give_the_loop_a_turn(
    upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for the Responses and Chat relays (test_events.py): a gzip body of comment lines read
    # back to back from aiohttp's buffer held the loop for the whole body.
    upstream.route("POST", RUNS, reply_gzip(COMMENTS + fixture_bytes("A-text.sse")))
    async with (
        loop_turns(monkeypatch) as seen,
        client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream,
    ):
        first = await stream.read_batch()
    assert first and isinstance(first[0].event, RunEvent)
    assert turns_between_reads(seen)


@pytest.mark.asyncio
async def test_a_run_event_of_another_run_says_nothing_of_this_streams_run(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    """The stream's run is its first run event's: another run's ``requires_action`` (or end)
    is handed out for the relay to refuse, and an EOF after it is still a truncation."""
    raw = fixture_bytes("A-text.sse")
    part = cut_after(raw, b"thread.message.delta")
    other = raw[raw.rindex(b"event: thread.run.completed") :].split(b"\n\n")[0] + b"\n\n"
    other = other.replace(b"run_7Lm", b"run_other").replace(b"thread_9Qx", b"thread_other")
    upstream.route("POST", RUNS, reply_sse(part + other))
    seen: list[StreamItem] = []
    with pytest.raises(StreamTruncated) as info:
        async with client.stream_run("thread_9Qx", {"assistant_id": "asst_42"}) as stream:
            async for item in stream:
                seen.append(item)
    assert seen[-1].name == "thread.run.completed"  # handed out as it came
    assert (stream.run_id, stream.thread_id, stream.last_status) == (
        "run_7Lm",
        "thread_9Qx",
        "in_progress",
    )
    assert (info.value.run_id, info.value.last_status) == ("run_7Lm", "in_progress")
