"""The snapshot reducers against hostile indices: an event whose index is negative, or far past
the entries held, is skipped by the snapshot, never an exception or an allocation of its size."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import parsers.chat as pc
import parsers.responses as pr
from parsers.chat.reducer import _MAX_INDEX_GAP as CHAT_GAP
from parsers.responses.reducer import _MAX_INDEX_GAP as RESPONSES_GAP
from parsers.sse import ServerSentEvent

HUGE = 10**9
BAD = [HUGE, -1]
# What one hostile event may allocate: a few stub items or parts, not its index's worth.
MAX_BYTES = 256 * 1024


def response_event(payload: dict[str, Any]) -> pr.ResponseStreamEvent:
    return pr.decode_event(ServerSentEvent(data_bytes=json.dumps(payload).encode()))


def chat_event(*choices: dict[str, Any]) -> pc.ChatStreamEvent:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": choices,
    }
    return pc.decode_chunk(ServerSentEvent(data_bytes=json.dumps(chunk).encode()))


def text_delta(delta: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": delta,
        **fields,
    }


# A message "Hi" at output 0 and a reasoning item summarised "Think" at output 1.
RESPONSE_START = [
    {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
    {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
    },
    {
        "type": "response.content_part.added",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": []},
    },
    text_delta("Hi"),
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"id": "rs_1", "type": "reasoning", "summary": []},
    },
    {
        "type": "response.reasoning_summary_part.added",
        "item_id": "rs_1",
        "output_index": 1,
        "summary_index": 0,
        "part": {"type": "summary_text", "text": ""},
    },
    {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": 1,
        "summary_index": 0,
        "delta": "Think",
    },
]

MESSAGE = {"id": "msg_2", "type": "message", "role": "assistant", "content": []}
# Unlike the parts held, so that one put at the wrong position shows.
OTHER_PART = {"type": "refusal", "refusal": "no"}
OTHER_SUMMARY = {"type": "summary_text", "text": "", "status": "incomplete"}
ANNOTATION = {"type": "url_citation", "url": "https://example.com", "start_index": 0}


def on_msg(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "item_id": "msg_1", "output_index": 0, **fields}


def on_rs(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "item_id": "rs_1", "output_index": 1, **fields}


# Each builds one event whose named index is ``bad``.
RESPONSE_HOSTILE: dict[str, Callable[[int], dict[str, Any]]] = {
    "output_item.added:output_index": lambda bad: {
        "type": "response.output_item.added",
        "output_index": bad,
        "item": MESSAGE,
    },
    "output_item.done:output_index": lambda bad: {
        "type": "response.output_item.done",
        "output_index": bad,
        "item": MESSAGE,
    },
    "text.delta(new item):output_index": lambda bad: text_delta(
        "x", item_id="msg_9", output_index=bad
    ),
    "text.delta(id-less item):output_index": lambda bad: text_delta(
        "x", item_id="", output_index=bad
    ),
    "function_call_arguments.delta:output_index": lambda bad: {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_9",
        "output_index": bad,
        "delta": "{",
    },
    "function_call_arguments.done:output_index": lambda bad: {
        "type": "response.function_call_arguments.done",
        "item_id": "fc_9",
        "output_index": bad,
        "arguments": "{}",
        "name": "f",
    },
    "content_part.added:content_index": lambda bad: on_msg(
        "response.content_part.added", content_index=bad, part=OTHER_PART
    ),
    "output_text.delta:content_index": lambda bad: text_delta("x", content_index=bad),
    "output_text.done:content_index": lambda bad: on_msg(
        "response.output_text.done", content_index=bad, text="x"
    ),
    "refusal.delta:content_index": lambda bad: on_msg(
        "response.refusal.delta", content_index=bad, delta="no"
    ),
    "reasoning_text.delta:content_index": lambda bad: on_rs(
        "response.reasoning_text.delta", content_index=bad, delta="x"
    ),
    "reasoning_summary_part.added:summary_index": lambda bad: on_rs(
        "response.reasoning_summary_part.added",
        summary_index=bad,
        part=OTHER_SUMMARY,
    ),
    "reasoning_summary_text.delta:summary_index": lambda bad: on_rs(
        "response.reasoning_summary_text.delta", summary_index=bad, delta="x"
    ),
    "reasoning_summary_text.done:summary_index": lambda bad: on_rs(
        "response.reasoning_summary_text.done", summary_index=bad, text="x"
    ),
    "annotation.added:annotation_index": lambda bad: on_msg(
        "response.output_text.annotation.added",
        content_index=0,
        annotation_index=bad,
        annotation=ANNOTATION,
    ),
    "annotation.added:content_index": lambda bad: on_msg(
        "response.output_text.annotation.added",
        content_index=bad,
        annotation_index=0,
        annotation=ANNOTATION,
    ),
}


def apply_measured(apply: Callable[[], None]) -> int:
    """Peak bytes allocated while ``apply`` runs."""
    tracemalloc.start()
    try:
        apply()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def response_started() -> pr.ResponseAccumulator:
    acc = pr.ResponseAccumulator()
    for payload in RESPONSE_START:
        acc.apply(response_event(payload))
    return acc


# -- Responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD, ids=["huge", "negative"])
@pytest.mark.parametrize("name", sorted(RESPONSE_HOSTILE))
def test_responses_event_with_a_hostile_index_is_skipped(name: str, bad: int) -> None:
    acc = response_started()
    before = acc.snapshot()
    event = response_event(RESPONSE_HOSTILE[name](bad))
    assert apply_measured(lambda: acc.apply(event)) < MAX_BYTES
    assert acc.snapshot() == before
    # The reducer goes on as if the event had not come.
    acc.apply(response_event(text_delta("!")))
    output = acc.snapshot()["response"]["output"]
    assert [item["id"] for item in output] == ["msg_1", "rs_1"]
    assert output[0]["content"] == [{"type": "output_text", "text": "Hi!", "annotations": []}]
    assert output[1]["summary"] == [{"type": "summary_text", "text": "Think"}]


def test_responses_indices_may_skip_a_few_positions() -> None:
    """A server that leaves events out (LiteLLM#22102) skips positions; up to the gap is kept."""
    acc = pr.ResponseAccumulator()
    acc.apply(response_event(text_delta("a", item_id="msg_a", output_index=RESPONSES_GAP)))
    acc.apply(response_event(text_delta("b", item_id="msg_a", content_index=RESPONSES_GAP)))
    too_far = RESPONSES_GAP + 1 + RESPONSES_GAP + 1
    acc.apply(response_event(text_delta("c", item_id="msg_a", content_index=too_far)))
    acc.apply(response_event(text_delta("d", item_id="msg_b", output_index=too_far)))
    output = acc.snapshot()["response"]["output"]
    assert [item["id"] for item in output] == ["msg_a"]
    content = output[0]["content"]
    assert len(content) == RESPONSES_GAP + 1
    assert (content[0]["text"], content[-1]["text"]) == ("a", "b")


# -- Chat -----------------------------------------------------------------------------------------


def chat_started() -> pc.ChatAccumulator:
    acc = pc.ChatAccumulator()
    call = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{"}}
    acc.apply(chat_event({"index": 0, "delta": {"content": "Hi", "tool_calls": [call]}}))
    return acc


CHAT_HOSTILE: dict[str, Callable[[int], dict[str, Any]]] = {
    "choice:index": lambda bad: {"index": bad, "delta": {"content": "x"}, "finish_reason": "stop"},
    "tool_call:index": lambda bad: {
        "index": 0,
        "delta": {"tool_calls": [{"index": bad, "id": "call_9", "function": {"name": "g"}}]},
    },
    "tool_call(no id):index": lambda bad: {
        "index": 0,
        "delta": {"tool_calls": [{"index": bad, "function": {"arguments": "x"}}]},
    },
}


@pytest.mark.parametrize("bad", BAD, ids=["huge", "negative"])
@pytest.mark.parametrize("name", sorted(CHAT_HOSTILE))
def test_chat_entry_with_a_hostile_index_is_skipped(name: str, bad: int) -> None:
    acc = chat_started()
    before = acc.snapshot()
    event = chat_event(CHAT_HOSTILE[name](bad))
    assert apply_measured(lambda: acc.apply(event)) < MAX_BYTES
    assert acc.snapshot() == before
    call = {"index": 0, "function": {"arguments": "}"}}
    acc.apply(chat_event({"index": 0, "delta": {"content": "!", "tool_calls": [call]}}))
    (choice,) = acc.snapshot()["completion"]["choices"]
    assert choice["message"]["content"] == "Hi!"
    assert [c["function"]["arguments"] for c in choice["message"]["tool_calls"]] == ["{}"]


def test_chat_indices_may_skip_a_few_positions() -> None:
    acc = pc.ChatAccumulator()
    first = {"index": CHAT_GAP, "id": "call_1", "function": {"name": "f"}}
    acc.apply(chat_event({"index": CHAT_GAP, "delta": {"tool_calls": [first]}}))
    beyond = {"index": 2 * CHAT_GAP + 2, "id": "call_2", "function": {"name": "g"}}
    acc.apply(chat_event({"index": CHAT_GAP, "delta": {"tool_calls": [beyond]}}))
    acc.apply(chat_event({"index": 2 * CHAT_GAP + 2, "delta": {"content": "x"}}))
    (choice,) = acc.snapshot()["completion"]["choices"]
    assert choice["index"] == CHAT_GAP
    assert [c["id"] for c in choice["message"]["tool_calls"]] == ["call_1"]
