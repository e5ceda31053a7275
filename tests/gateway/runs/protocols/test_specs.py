"""The Responses and Chat stream specs and snapshot reducers on the golden streams of
``tests/data``: ids, last words, cursors and resumability as the pump sees them; snapshots that
agree with the stream's own final object, from typed events or from bytes alone; a conversation
or named channel folding its latest stream."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.hub import HubEvent
from gateway.runs.protocols import CHAT, RESPONSES, conversation_of, reducer_factory
from gateway.runs.protocols.lost import lost_event
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).parents[3] / "data"


def _events(kind: str, name: str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [*decoder.feed((DATA / kind / name).read_bytes()), *decoder.close()]


def _hub(events: list[ServerSentEvent], *, typed: bool) -> list[HubEvent]:
    """Hub events as the relay publishes them: with its typed event, or bytes alone."""
    spec = CHAT if b"chat.completion.chunk" in events[0].data_bytes else RESPONSES
    return [
        HubEvent(sse.event, sse.data_bytes, spec.decode(sse)[0] if typed else None)
        for sse in events
    ]


@pytest.mark.parametrize(
    "name",
    [
        "A-text.sse",
        "B-function-call.sse",
        "G-failed.sse",
        "H-incomplete.sse",
        "I-keepalive-obfuscation.sse",
        "J-data-only-done.sse",
    ],
)
def test_responses_spec_names_the_id_the_end_and_the_cursor(name: str) -> None:
    events = _events("responses", name)
    seen = [RESPONSES.decode(sse)[1] for sse in events]
    ids = {s.object_id for s in seen if s.object_id is not None}
    assert len(ids) == 1 and seen[0].object_id is not None
    # A `[DONE]` (LiteLLM-style) closes the HTTP stream; the terminal event before it is the end.
    assert [s.closes for s in seen] == [sse.data_bytes == b"[DONE]" for sse in events]
    words = [s for s in seen if not s.closes]
    assert words[-1].end and not any(s.end for s in words[:-1])
    cursors = [s.cursor for s in seen if s.cursor is not None]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert not any(s.resumable for s in seen)
    assert RESPONSES.resume("resp_1", 7) == ("/responses/resp_1", "stream=true&starting_after=7")


def test_a_background_response_is_resumable() -> None:
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_b", "background": True},
    }
    sse = ServerSentEvent(event="response.created", data_bytes=orjson.dumps(created))
    typed, seen = RESPONSES.decode(sse)
    assert typed is not None and seen.resumable and seen.object_id == "resp_b" and seen.cursor == 0


@pytest.mark.parametrize(
    "name", ["A-text.sse", "C-tool-call.sse", "E-tool-calls-without-index.sse", "H-error.sse"]
)
def test_chat_spec_ends_only_at_done_and_never_resumes(name: str) -> None:
    events = _events("chat", name)
    seen = [CHAT.decode(sse)[1] for sse in events]
    done = [sse.data_bytes == b"[DONE]" for sse in events]
    assert [s.end for s in seen] == done and [s.closes for s in seen] == done
    assert all(s.cursor is None and not s.resumable for s in seen)
    assert CHAT.resume("chatcmpl-1", 3) is None


def test_undecodable_events_are_relayed_untyped() -> None:
    garbage = ServerSentEvent(event="message", data_bytes=b"{not json")
    assert RESPONSES.decode(garbage)[0] is None and CHAT.decode(garbage)[0] is None


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize(
    "name", ["A-text.sse", "B-function-call.sse", "C-parallel-calls.sse", "D-reasoning.sse"]
)
def test_response_snapshot_agrees_with_the_completed_response(name: str, typed: bool) -> None:
    events = _events("responses", name)
    reducer = reducer_factory("response:x")
    assert reducer is not None
    for event in _hub(events, typed=typed):
        reducer.apply(event)
    final = orjson.loads(events[-1].data_bytes)["response"]
    assert orjson.loads(reducer.snapshot())["response"]["output"] == final["output"]


def test_conversation_and_named_channels_fold_their_latest_stream() -> None:
    text = _events("responses", "A-text.sse")
    call = _events("responses", "B-function-call.sse")
    chat = _events("chat", "A-text.sse")
    conversation = reducer_factory("conversation:conv_1")
    named = reducer_factory("channel:s1")
    assert conversation is not None and named is not None
    assert named.snapshot() == b"null"
    for event in _hub(text, typed=False) + _hub(call, typed=True):
        conversation.apply(event)
        named.apply(event)
    final = orjson.loads(call[-1].data_bytes)["response"]
    assert orjson.loads(conversation.snapshot())["response"]["id"] == final["id"]
    assert orjson.loads(conversation.snapshot())["response"]["output"] == final["output"]
    assert orjson.loads(named.snapshot()) == orjson.loads(conversation.snapshot())
    for event in _hub(chat, typed=False):
        named.apply(event)
    completion = orjson.loads(named.snapshot())["completion"]
    first = orjson.loads(chat[0].data_bytes)
    assert completion["id"] == first["id"] and orjson.loads(named.snapshot())["done"]
    assert reducer_factory("run:r") is None


def test_a_chat_channel_keeps_one_completion_whose_chunks_each_have_their_own_id() -> None:
    """Older llama.cpp servers and some LiteLLM versions give every chunk a new id: the snapshot
    must still join the whole answer, and the next completion (after a finish) start afresh."""
    golden = _events("chat", "B-usage.sse")
    answer = "".join(
        choice["delta"].get("content") or ""
        for sse in golden
        if sse.data_bytes != b"[DONE]"
        for choice in orjson.loads(sse.data_bytes)["choices"]
    )
    own_ids = []
    for n, sse in enumerate(golden):
        if sse.data_bytes != b"[DONE]":
            chunk = {**orjson.loads(sse.data_bytes), "id": f"chatcmpl-{n}"}
            sse = ServerSentEvent(sse.event, orjson.dumps(chunk))
        own_ids.append(sse)
    reducer = reducer_factory("chat:chatcmpl-0")
    assert reducer is not None and answer
    for event in _hub(own_ids, typed=True):
        reducer.apply(event)
    snapshot = orjson.loads(reducer.snapshot())["completion"]
    assert snapshot["choices"][0]["message"]["content"] == answer
    assert snapshot["usage"] is not None  # the usage chunk (no choices) joined the completion
    for event in _hub(_events("chat", "A-text.sse"), typed=False):  # a follow-up completion
        reducer.apply(event)
    following = orjson.loads(reducer.snapshot())["completion"]
    assert following["id"] == orjson.loads(_events("chat", "A-text.sse")[0].data_bytes)["id"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"conversation": "conv_1", "input": "x"}', "conv_1"),
        (b'{"conversation": {"id": "conv_2"}}', "conv_2"),
        (b'{"input": "x"}', None),
        (b'{"conversation": ""}', None),
        (b"not json", None),
    ],
)
def test_conversation_of_the_creating_request(body: bytes, expected: str | None) -> None:
    assert conversation_of(body) == expected


_LOST = lost_event(
    "runcast lost the upstream stream (connection_lost) before its end: cut",
    reason="connection_lost",
    kind="response",
    object_id="resp_1",
    cursor=5,
)


@pytest.mark.parametrize(
    ("kind", "golden", "channel"),
    [
        ("responses", "A-text.sse", "response:resp_1"),
        ("responses", "A-text.sse", "channel:s1"),
        ("chat", "A-text.sse", "chat:chatcmpl_1"),
        ("chat", "A-text.sse", "channel:s1"),
    ],
)
@pytest.mark.parametrize("typed", [True, False])
def test_a_stream_runcast_gave_up_on_is_done_in_its_snapshot(
    kind: str, golden: str, channel: str, typed: bool
) -> None:
    # The channel ended with runcast.upstream_lost, but its snapshot said done: false (a
    # response "in_progress") for good: a late joiner took it for one still generating.
    events = _hub(_events(kind, golden)[:5], typed=typed)
    reducer = reducer_factory(channel)
    assert reducer is not None
    for event in events:
        reducer.apply(event)
    assert orjson.loads(reducer.snapshot())["done"] is False
    reducer.apply(_LOST)
    snapshot = orjson.loads(reducer.snapshot())
    assert snapshot["done"] is True
    assert snapshot["error"]["code"] == "upstream_lost"


@pytest.mark.parametrize("channel", ["response:resp_1", "channel:s1", "conversation:conv_1"])
def test_a_response_found_cancelled_is_cancelled_in_its_snapshot(channel: str) -> None:
    # A cancelled response has no event of its own: its stream ends with runcast.upstream_lost
    # naming the status, but a late joiner's snapshot still said "in_progress".
    reducer = reducer_factory(channel)
    assert reducer is not None
    for event in _hub(_events("responses", "A-text.sse")[:5], typed=True):
        reducer.apply(event)
    assert orjson.loads(reducer.snapshot())["response"]["status"] == "in_progress"
    reducer.apply(
        lost_event(
            "the response was cancelled",
            reason="connection_lost",
            kind="response",
            object_id="resp_1",
            cursor=5,
            status="cancelled",
        )
    )
    snapshot = orjson.loads(reducer.snapshot())
    assert snapshot["done"] is True and snapshot["response"]["status"] == "cancelled"


def test_a_chat_error_chunk_keeps_a_named_channel_a_chat_snapshot() -> None:
    # The chunk {"error": ...} was taken for a Responses event: the named channel's snapshot
    # turned into an empty response.
    chat = _hub(_events("chat", "A-text.sse")[:4], typed=True)
    error = HubEvent("message", b'{"error":{"message":"boom","type":"server_error"}}')
    error = HubEvent("message", error.data, CHAT.decode(ServerSentEvent(data_bytes=error.data))[0])
    named = reducer_factory("channel:s1")
    assert named is not None
    for event in [*chat, error]:
        named.apply(event)
    snapshot = orjson.loads(named.snapshot())
    assert "completion" in snapshot and snapshot["error"]["message"] == "boom"
