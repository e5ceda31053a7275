"""The small pure pieces of the HTTP layer: creator feed, call routing, headers, reducers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from multidict import CIMultiDict

from gateway.errors import UpstreamTimeout
from gateway.http.errors import upstream_failure
from gateway.http.headers import copy_response_headers, forward_request_headers
from gateway.http.routes import StreamedCall, streamed_call
from gateway.hub import HubEvent
from gateway.runs.assistants.reducer import RunReducer, ThreadReducer, reducer_factory
from gateway.runs.feed import CreatorFeed
from parsers.assistants import decode_event
from parsers.sse import ServerSentEvent, SSEDecoder

FIXTURES = Path(__file__).parents[2] / "data" / "assistants"


# -- CreatorFeed -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_feed_coalesces_and_ends_after_draining() -> None:
    feed = CreatorFeed(100)
    assert feed.push(b"a", event_id="1") and feed.push(b"b", event_id="2")
    assert await feed.read() == b"ab"
    assert feed.last_id == "2"
    feed.push(b"c")
    feed.finish()
    assert not feed.push(b"d")
    assert await feed.read() == b"c"
    assert await feed.read() is None


@pytest.mark.asyncio
async def test_feed_overflow_drops_buffer_and_marks_lagged() -> None:
    feed = CreatorFeed(10)
    assert feed.push(b"x" * 50)  # one event always fits an empty buffer
    assert await feed.read() == b"x" * 50
    assert feed.push(b"123456")
    assert feed.push(b"789012")  # the backlog was within the limit
    assert not feed.push(b"345678")
    assert feed.lagged and feed.statistics().buffered_bytes == 0
    assert await feed.read() is None
    assert not feed.push(b"1")


@pytest.mark.asyncio
async def test_feed_takes_a_large_event_behind_queued_ones_and_what_follows_it() -> None:
    """The subscribers' lag policy: a 5 MB ``thread.message.completed`` pushed while the last
    deltas of the same read are still queued, then the run's last events, all fit a 4 MiB feed."""
    feed = CreatorFeed(4 << 20)
    for i in range(3):
        assert feed.push(b"d" * 5_000, event_id=str(i))
    assert feed.push(b"m" * (5 << 20), event_id="3")
    for i in range(4, 7):
        assert feed.push(b"e" * 1_000, event_id=str(i))
    assert not feed.lagged
    assert len(await feed.read()) == 3 * 5_000 + (5 << 20) + 3 * 1_000
    assert feed.last_id == "6"


@pytest.mark.asyncio
async def test_feed_reader_wakes_on_push_and_detach_stops_it() -> None:
    feed = CreatorFeed(100)
    reader = asyncio.create_task(feed.read())
    await asyncio.sleep(0)
    feed.push(b"late")
    assert await reader == b"late"
    reader = asyncio.create_task(feed.read())
    await asyncio.sleep(0)
    feed.detach()
    assert await reader is None
    assert not feed.push(b"x")


class _Socket:
    """A transport that records its writes and reports a chosen backlog."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.backlog = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return False


@pytest.mark.asyncio
async def test_a_bound_feed_writes_at_once_after_what_was_buffered() -> None:
    feed = CreatorFeed(100)
    socket = _Socket()
    assert feed.push(b"early", event_id="1")  # before the response started
    feed.bind(socket)  # type: ignore[arg-type]
    assert feed.push(b"next", event_id="2")  # behind the buffered bytes, never before them
    assert socket.written == []
    assert await feed.read() == b"earlynext"
    assert feed.push(b"live", event_id="3")  # nothing buffered: one chunk, written at once
    assert socket.written == [b"4\r\nlive\r\n"]
    assert feed.last_id == "3" and feed.statistics().pushed_bytes == 13


@pytest.mark.asyncio
async def test_a_bound_feed_lags_on_the_sockets_own_backlog() -> None:
    feed = CreatorFeed(10)
    socket = _Socket()
    feed.bind(socket)  # type: ignore[arg-type]
    assert feed.push(b"x" * 50)  # one event always fits an empty backlog
    socket.backlog = 50
    assert feed.push(b"y")  # not charged for the large event ahead of it (the lag policy)
    socket.backlog = 70  # the peer stopped reading: past the limit and that allowance
    assert not feed.push(b"z")
    assert feed.lagged and len(socket.written) == 2
    assert await feed.read() is None


# -- which calls stream ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        (
            "POST",
            "/v1/threads/th_1/runs",
            b'{"stream":true}',
            StreamedCall(kind="run", thread_id="th_1"),
        ),
        ("POST", "/v1/threads/runs", b'{"a":1,"stream":true}', StreamedCall(kind="thread_and_run")),
        (
            "POST",
            "/v1/threads/th_1/runs/run_2/submit_tool_outputs",
            b'{"tool_outputs":[],"stream":true}',
            StreamedCall(kind="submit", thread_id="th_1", run_id="run_2"),
        ),
        ("POST", "/v1/threads/th_1/runs", b'{"stream":false}', None),
        ("POST", "/v1/threads/th_1/runs", b"{}", None),
        ("POST", "/v1/threads/th_1/runs", b"{not json", None),
        ("POST", "/v1/threads/th_1/runs", b'{"stream":"yes"}', None),
        ("POST", "/v1/threads/th_1/runs", b"[1]", None),
        ("GET", "/v1/threads/th_1/runs", b"", None),
        ("POST", "/v1/threads/th_1/runs/run_2/cancel", b'{"stream":true}', None),
        ("POST", "/v1/threads/th_1/messages", b'{"stream":true}', None),
    ],
)
def test_streamed_call(method: str, path: str, body: bytes, expected: StreamedCall | None) -> None:
    assert streamed_call(method, path, body) == expected


# -- upstream failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["first_byte", "idle"])
def test_a_timeout_after_sending_is_a_504_not_to_retry(phase: str) -> None:
    # The upstream may be running the request: the SDKs' retry of a 504 would run it again.
    error = upstream_failure(UpstreamTimeout(phase, 1.0))
    assert (error.status, error.code) == (504, "upstream_timeout")
    assert error.headers == {"x-should-retry": "false"}


def test_a_connect_timeout_stays_retryable() -> None:
    # Nothing was sent: the caller's client may try again.
    error = upstream_failure(UpstreamTimeout("connect", 1.0))
    assert (error.status, error.code) == (504, "upstream_timeout")
    assert error.headers is None


# -- headers -----------------------------------------------------------------------------------


def test_headers_cross_the_proxy_selectively() -> None:
    forwarded = forward_request_headers(
        {"Content-Type": "application/json", "OpenAI-Beta": "assistants=v2", "Cookie": "c=1"}
    )
    assert forwarded == {"Content-Type": "application/json", "OpenAI-Beta": "assistants=v2"}
    copied = copy_response_headers(
        {
            "content-type": "application/json",
            "x-request-id": "req_1",
            "openai-poll-after-ms": "50",
            "x-ratelimit-remaining-requests": "9",
            "set-cookie": "a=b",
            "server": "upstream",
        },
        content_type=False,
    )
    assert copied == {
        "x-request-id": "req_1",
        "openai-poll-after-ms": "50",
        "x-ratelimit-remaining-requests": "9",
    }


def test_a_repeated_list_header_keeps_every_value_in_order_and_others_their_last() -> None:
    # Only the last Link the upstream sent reached the caller; a repeated single-value header
    # (Content-Type, Location, a count) must not reach it twice.
    upstream = CIMultiDict(
        [
            ("Link", "</v1/models?after=a>; rel=next"),
            ("x-ratelimit-limit-requests", "100"),
            ("Set-Cookie", "a=1"),
            ("link", "</v1/models?before=a>; rel=prev"),
            ("X-RateLimit-Limit-Requests", "200"),
            ("Set-Cookie", "b=2"),
            ("Content-Type", "application/json"),
            ("Location", "/a"),
            ("Content-Type", "text/html"),
            ("location", "/b"),
        ]
    )
    copied = copy_response_headers(upstream)
    assert copied.getall("Link") == [
        "</v1/models?after=a>; rel=next",
        "</v1/models?before=a>; rel=prev",
    ]
    assert copied.getall("x-ratelimit-limit-requests") == ["200"]
    assert copied.getall("Content-Type") == ["text/html"]
    assert copied.getall("Location") == ["/b"]
    assert "Set-Cookie" not in copied
    # Setting a header on the result still replaces every value the upstream gave it.
    streamed = copy_response_headers(upstream, content_type=False)
    streamed["link"] = "<mine>"
    assert streamed.getall("Link") == ["<mine>"]
    assert "Content-Type" not in streamed


# -- reducers ----------------------------------------------------------------------------------


def fixture_events(*names: str) -> list[HubEvent]:
    events: list[HubEvent] = []
    for name in names:
        decoder = SSEDecoder()
        sses = decoder.feed((FIXTURES / name).read_bytes()) + decoder.close()
        events.extend(HubEvent(sse.event, sse.data_bytes) for sse in sses)
    return events


def test_reducer_factory_and_run_reducer() -> None:
    assert reducer_factory("other:x") is None
    assert isinstance(reducer_factory("run:run_1"), RunReducer)
    assert isinstance(reducer_factory("thread:th_1"), ThreadReducer)
    reducer = RunReducer()
    for event in fixture_events("B1-requires-action.sse", "B2-after-submit.sse"):
        reducer.apply(event)
    reducer.apply(HubEvent("runcast.tool_call.started", b'{"name":"x"}'))
    reducer.apply(HubEvent("thread.run.completed", b"{not json"))  # skipped, not fatal
    snapshot = orjson.loads(reducer.snapshot())
    assert snapshot["status"] == "completed"
    assert snapshot["steps"][0]["step_details"]["tool_calls"][0]["function"]["arguments"] == (
        '{"city":"Oslo"}'
    )
    assert snapshot["messages"][0]["content"][0]["text"]["value"] == "It is 4 °C in Oslo."


def test_reducer_uses_the_relays_typed_event_and_agrees_with_the_bytes() -> None:
    from_bytes, from_typed = RunReducer(), RunReducer()
    for event in fixture_events("A-text.sse"):
        from_bytes.apply(event)
        typed = decode_event(ServerSentEvent(event=event.name, data_bytes=event.data))
        # Bytes a parser would reject: only the typed form can have produced the snapshot.
        from_typed.apply(HubEvent(event.name, b"{not json", typed))
    assert from_typed.snapshot() == from_bytes.snapshot()
    assert orjson.loads(from_typed.snapshot())["status"] == "completed"


def test_thread_reducer_follows_the_latest_run() -> None:
    reducer = ThreadReducer()
    first = fixture_events("A-text.sse")
    for event in first:
        reducer.apply(event)
    assert orjson.loads(reducer.snapshot())["status"] == "completed"
    second_run = first[0].data.replace(b"run_7Lm", b"run_next")
    reducer.apply(HubEvent("thread.run.created", second_run))
    snapshot = orjson.loads(reducer.snapshot())
    assert snapshot["run_id"] == "run_next"
    assert snapshot["messages"] == [] and snapshot["status"] == "queued"
