"""Protocol drivers on literal event sequences: text, terminal events, follow-ups, channel ids."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from gateway.loadtest.protocols import (
    AssistantsProtocol,
    ChatProtocol,
    LoadProtocol,
    ResponsesProtocol,
    RunStart,
    Seen,
    Tracker,
)


def feed(tracker: Tracker, events: list[tuple[str, object]]) -> list[Seen]:
    return [
        tracker.feed(name, data if isinstance(data, bytes) else json.dumps(data).encode())
        for name, data in events
    ]


async def begin(protocol: LoadProtocol, answers: Mapping[str, bytes] | None = None) -> RunStart:
    posted: list[str] = []

    async def post(path: str, body: Mapping[str, object]) -> bytes:
        posted.append(path)
        return (answers or {})[path]

    return await protocol.begin(post)


# -- Assistants ----------------------------------------------------------------------------------

RUN = {"id": "run_1", "object": "thread.run"}


def message_delta(text: str) -> dict[str, object]:
    return {
        "id": "msg_1",
        "delta": {"content": [{"index": 0, "type": "text", "text": {"value": text}}]},
    }


@pytest.mark.asyncio
async def test_assistants_text_run_and_its_thread_channel() -> None:
    protocol = AssistantsProtocol(model="m", scenario="text")
    start = await begin(protocol, {"/threads": b'{"id":"thread_9"}'})
    assert start.request.path == "/threads/thread_9/runs"
    assert start.request.body["stream"] is True
    assert start.request.body["metadata"] == {"mock_scenario": "text"}
    assert start.channel == "/streams/threads/thread_9"
    assert start.token_scope == {"thread_id": "thread_9"}
    tracker = protocol.tracker(start)
    seen = feed(
        tracker,
        [
            ("thread.run.created", {**RUN, "status": "queued"}),
            ("runcast.subscribed", {}),
            ("thread.message.delta", message_delta("Hello")),
            ("thread.message.delta", message_delta(" you")),
            ("thread.run.completed", {**RUN, "status": "completed"}),
            ("done", b"[DONE]"),
        ],
    )
    assert [s.text for s in seen] == [0, 0, 5, 4, 0, 0]
    assert [s.upstream for s in seen] == [True, False, True, True, True, True]
    assert [s.end for s in seen] == [False] * 5 + [True]
    assert tracker.finished and tracker.outcome() == "completed"
    assert tracker.follow_up() is None


def test_assistants_requires_action_is_followed_by_tool_outputs() -> None:
    tracker = AssistantsProtocol(model="m", scenario="tool_call").tracker(
        RunStart(request=_request("/threads/thread_9/runs"))
    )
    action = {
        **RUN,
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {"tool_calls": [{"id": "call_a"}, {"id": "call_b"}]},
        },
    }
    feed(
        tracker,
        [
            ("thread.run.created", {**RUN, "status": "queued"}),
            ("thread.run.requires_action", action),
        ],
    )
    assert feed(tracker, [("done", b"[DONE]")])[0].end
    assert not tracker.finished  # a segment ended, not the run
    follow = tracker.follow_up()
    assert follow is not None
    assert follow.path == "/threads/thread_9/runs/run_1/submit_tool_outputs"
    assert follow.body["tool_outputs"] == [
        {"tool_call_id": "call_a", "output": "ok"},
        {"tool_call_id": "call_b", "output": "ok"},
    ]
    feed(tracker, [("thread.run.completed", {**RUN, "status": "completed"}), ("done", b"[DONE]")])
    assert tracker.finished and tracker.outcome() == "completed"


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([("thread.run.failed", {**RUN, "status": "failed"}), ("done", b"[DONE]")], "run_failed"),
        ([("error", {"message": "boom"}), ("done", b"[DONE]")], "upstream_error"),
        ([("runcast.upstream_error", {"message": "gone"})], "upstream_error"),
        ([("runcast.lagged", {})], "lagged"),
        ([("thread.run.in_progress", {**RUN, "status": "in_progress"})], "truncated"),
    ],
)
def test_assistants_outcomes(events: list[tuple[str, object]], outcome: str) -> None:
    tracker = AssistantsProtocol(model="m", scenario="x").tracker(
        RunStart(_request("/threads/t/runs"))
    )
    feed(tracker, events)
    assert tracker.outcome() == outcome


def _request(path: str):  # type: ignore[no-untyped-def]
    from gateway.loadtest.protocols import Request

    return Request(path, {})


# -- Responses -----------------------------------------------------------------------------------


def responses_event(kind: str, **fields: object) -> tuple[str, object]:
    return (kind, {"type": kind, "sequence_number": 0, **fields})


RESPONSE_TEXT = [
    responses_event(
        "response.created", response={"id": "resp_1", "status": "in_progress", "output": []}
    ),
    responses_event("response.in_progress", response={"id": "resp_1", "status": "in_progress"}),
    responses_event(
        "response.output_item.added", output_index=0, item={"id": "msg_1", "type": "message"}
    ),
    responses_event("response.output_text.delta", item_id="msg_1", delta="Hi", obfuscation="xyz"),
    ("keepalive", {"type": "keepalive", "sequence_number": 4}),
    responses_event("response.output_text.delta", item_id="msg_1", delta=" there"),
    responses_event("response.output_text.done", item_id="msg_1", text="Hi there"),
    responses_event(
        "response.completed",
        response={"id": "resp_1", "status": "completed", "output": [{"type": "message"}]},
    ),
]


@pytest.mark.asyncio
async def test_responses_text_stream_official_shape() -> None:
    protocol = ResponsesProtocol(model="gpt-x", scenario="text")
    start = await begin(protocol)
    assert start.request.path == "/responses"
    assert start.request.body["stream"] is True and start.request.body["model"] == "gpt-x"
    assert start.channel is None  # known once response.created names the response
    tracker = protocol.tracker(start)
    assert tracker.channel is None
    seen = feed(tracker, RESPONSE_TEXT)
    assert tracker.channel == "/streams/responses/resp_1"
    assert [s.text for s in seen] == [0, 0, 0, 2, 0, 6, 0, 0]
    assert [s.end for s in seen] == [False] * 7 + [True]
    assert tracker.finished and tracker.outcome() == "completed"
    # LiteLLM-style [DONE] after the terminal event is accepted.
    assert feed(tracker, [("message", b"[DONE]")])[0].end
    assert tracker.outcome() == "completed"


def test_responses_dispatch_on_json_type_without_event_lines() -> None:
    tracker = ResponsesProtocol(model="m", scenario="text").tracker(
        RunStart(_request("/responses"))
    )
    seen = feed(tracker, [("message", data) for _, data in RESPONSE_TEXT])
    assert sum(s.text for s in seen) == 8 and tracker.outcome() == "completed"


def test_responses_function_call_is_answered_with_previous_response_id() -> None:
    tracker = ResponsesProtocol(model="m", scenario="tool_call").tracker(
        RunStart(_request("/responses"))
    )
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_7",
        "name": "lookup",
        "arguments": "{}",
    }
    feed(
        tracker,
        [
            responses_event("response.created", response={"id": "resp_1", "output": []}),
            responses_event("response.function_call_arguments.delta", item_id="fc_1", delta="{}"),
            responses_event(
                "response.completed",
                response={"id": "resp_1", "status": "completed", "output": [call]},
            ),
        ],
    )
    assert not tracker.finished
    follow = tracker.follow_up()
    assert follow is not None and follow.path == "/responses"
    assert follow.body["previous_response_id"] == "resp_1"
    assert follow.body["input"] == [
        {"type": "function_call_output", "call_id": "call_7", "output": "ok"}
    ]
    seen = feed(
        tracker,
        [
            *RESPONSE_TEXT[:1],
            responses_event(
                "response.completed", response={"id": "resp_2", "status": "completed", "output": []}
            ),
        ],
    )
    assert seen[-1].end and tracker.finished and tracker.outcome() == "completed"
    assert tracker.channel == "/streams/responses/resp_1"  # the first response's channel


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([responses_event("response.failed", response={"status": "failed"})], "run_failed"),
        (
            [responses_event("response.incomplete", response={"status": "incomplete"})],
            "run_incomplete",
        ),
        (
            [
                ("error", {"type": "error", "error": {"type": "server_error", "message": "x"}}),
                responses_event("response.failed"),
            ],
            "upstream_error",
        ),
        ([("error", {"type": "error", "code": "x", "message": "flat"})], "upstream_error"),
        (RESPONSE_TEXT[:4], "truncated"),
    ],
)
def test_responses_outcomes(events: list[tuple[str, object]], outcome: str) -> None:
    tracker = ResponsesProtocol(model="m", scenario="x").tracker(RunStart(_request("/responses")))
    feed(tracker, events)
    assert tracker.outcome() == outcome


# -- Chat Completions ----------------------------------------------------------------------------


def chunk(
    delta: dict[str, object], finish: str | None = None, cid: str = "chatcmpl-1"
) -> tuple[str, object]:
    return (
        "message",
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        },
    )


@pytest.mark.asyncio
async def test_chat_text_stream_official_shape() -> None:
    protocol = ChatProtocol(model="gpt-x", scenario="text")
    start = await begin(protocol)
    assert start.request.path == "/chat/completions"
    body = start.request.body
    assert body["stream"] is True and body["messages"] == [
        {"role": "user", "content": "Say something."}
    ]
    tracker = protocol.tracker(start)
    seen = feed(
        tracker,
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            ("message", {"id": "chatcmpl-1", "choices": [], "usage": {"total_tokens": 3}}),
            ("message", b"[DONE]"),
        ],
    )
    assert tracker.channel == "/streams/chat/chatcmpl-1"
    assert [s.text for s in seen] == [0, 3, 2, 0, 0, 0]
    assert [s.end for s in seen] == [False] * 5 + [True]
    assert tracker.finished and tracker.outcome() == "completed"


def test_chat_tool_call_fragments_are_joined_and_answered() -> None:
    protocol = ChatProtocol(model="m", scenario="tool_call")
    tracker = protocol.tracker(RunStart(_request("/chat/completions")))
    feed(
        tracker,
        [
            chunk(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "look", "arguments": ""},
                        }
                    ],
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"name": "up", "arguments": '{"wo'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'rd":"x"}'}}]}),
            chunk({}, "tool_calls"),
            ("message", b"[DONE]"),
        ],
    )
    assert not tracker.finished
    follow = tracker.follow_up()
    assert follow is not None and follow.path == "/chat/completions"
    messages = follow.body["messages"]
    assert isinstance(messages, list)
    assert messages[1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"word":"x"}'},
        }
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    feed(
        tracker,
        [
            chunk({"content": "done"}, cid="chatcmpl-2"),
            chunk({}, "stop", cid="chatcmpl-2"),
            ("message", b"[DONE]"),
        ],
    )
    assert tracker.finished and tracker.outcome() == "completed"
    assert tracker.channel == "/streams/chat/chatcmpl-1"


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([chunk({"content": "a"}), chunk({}, "length"), ("message", b"[DONE]")], "run_incomplete"),
        (
            [("message", {"error": {"message": "overloaded", "type": "server_error"}})],
            "upstream_error",
        ),
        ([chunk({"content": "a"}), chunk({}, "stop")], "truncated"),  # no [DONE]
        ([chunk({"content": "a"}), ("message", b"[DONE]")], "truncated"),  # no finish_reason
    ],
)
def test_chat_outcomes(events: list[tuple[str, object]], outcome: str) -> None:
    tracker = ChatProtocol(model="m", scenario="x").tracker(RunStart(_request("/chat/completions")))
    feed(tracker, events)
    assert tracker.outcome() == outcome
