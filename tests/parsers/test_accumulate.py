"""RunAccumulator: deltas fold into a snapshot that agrees with the completed payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import parsers.assistants as pa
from parsers._accumulate_content import FRAGMENT_OVERHEAD
from parsers.accumulate import (
    _OBJECT_OVERHEAD,
    RunAccumulator,
    RunSnapshot,
    encode_snapshot,
)
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).resolve().parents[1] / "data" / "assistants"
GOLDEN = sorted(DATA.glob("*.sse"))
FINAL_STEP_EVENTS = {
    "thread.run.step.completed",
    "thread.run.step.failed",
    "thread.run.step.cancelled",
    "thread.run.step.expired",
}
FINAL_MESSAGE_EVENTS = {"thread.message.completed", "thread.message.incomplete"}


def golden(*names: str) -> list[pa.AssistantStreamEvent]:
    events: list[pa.AssistantStreamEvent] = []
    for name in names:
        decoder = SSEDecoder()
        raw = decoder.feed((DATA / name).read_bytes()) + decoder.close()
        events += [pa.decode_event(e) for e in raw]
    return events


def fold(events: list[pa.AssistantStreamEvent]) -> RunAccumulator:
    acc = RunAccumulator()
    for event in events:
        acc.apply(event)
    return acc


def decode(event: str, data: dict[str, Any]) -> pa.AssistantStreamEvent:
    return pa.decode_event(ServerSentEvent(event=event, data_bytes=json.dumps(data).encode()))


def message_delta(message_id: str, *content: dict[str, Any]) -> pa.AssistantStreamEvent:
    return decode(
        "thread.message.delta",
        {"id": message_id, "object": "thread.message.delta", "delta": {"content": list(content)}},
    )


def step_delta(step_id: str, *calls: dict[str, Any]) -> pa.AssistantStreamEvent:
    return decode(
        "thread.run.step.delta",
        {
            "id": step_id,
            "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": list(calls)}},
        },
    )


def text(index: int, value: str, **extra: Any) -> dict[str, Any]:
    return {"index": index, "type": "text", "text": {"value": value, **extra}}


def function(index: int, **fields: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "type": "function"}
    if "id" in fields:
        call["id"] = fields.pop("id")
    call["function"] = fields
    return call


def message_created(message_id: str = "msg_1") -> pa.AssistantStreamEvent:
    return decode(
        "thread.message.created",
        {
            "id": message_id,
            "object": "thread.message",
            "thread_id": "thread_1",
            "run_id": "run_1",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        },
    )


def step_created(step_id: str = "step_1") -> pa.AssistantStreamEvent:
    return decode(
        "thread.run.step.created",
        {
            "id": step_id,
            "object": "thread.run.step",
            "thread_id": "thread_1",
            "run_id": "run_1",
            "type": "tool_calls",
            "status": "in_progress",
            "step_details": {"type": "tool_calls", "tool_calls": []},
        },
    )


def only_message(acc: RunAccumulator) -> pa.Message:
    (message,) = acc.snapshot().messages
    return message


def only_calls(acc: RunAccumulator) -> list[pa.ToolCall]:
    (step,) = acc.snapshot().steps
    assert isinstance(step.step_details, pa.ToolCallsStepDetails)
    return step.step_details.tool_calls


# -- agreement with the completed payloads ---------------------------------------------------------


def comparable_calls(step: pa.RunStep) -> list[Any]:
    """What the deltas of a tool-calls step promise to reproduce (spec §4.5)."""
    if not isinstance(step.step_details, pa.ToolCallsStepDetails):
        return []
    out: list[Any] = []
    for call in step.step_details.tool_calls:
        if isinstance(call, pa.FunctionToolCall):
            # output is filled in only when the outputs are submitted.
            out.append((call.id, call.function.name, call.function.arguments))
        elif isinstance(call, pa.CodeInterpreterToolCall):
            out.append((call.id, call.code_interpreter))
        elif isinstance(call, pa.FileSearchToolCall):
            # The delta carries an opaque {}; results exist only in the completed step.
            out.append((call.id, "file_search"))
        else:
            out.append(call)
    return out


# How many final message/step payloads follow deltas for the same object in each stream.
AGREEMENT_CHECKS = {
    ("A-text.sse",): 1,
    ("B1-requires-action.sse", "B2-after-submit.sse"): 2,
    ("B2-after-submit.sse",): 1,
    ("G-run-incomplete.sse",): 1,
    ("H-run-cancelled.sse",): 1,
    ("I-unknown-event.sse",): 1,
    ("J-thread-and-run.sse",): 1,
    ("K-code-interpreter-file-search.sse",): 3,
}


@pytest.mark.parametrize(
    "names",
    [(p.name,) for p in GOLDEN] + [("B1-requires-action.sse", "B2-after-submit.sse")],
    ids=[p.name for p in GOLDEN] + ["B1+B2"],
)
def test_deltas_agree_with_completed_payloads(names: tuple[str, ...]) -> None:
    acc = RunAccumulator()
    compared = 0
    delta_ids: set[str] = set()
    for event in golden(*names):
        if isinstance(event, pa.MessageDeltaEvent | pa.RunStepDeltaEvent):
            delta_ids.add(event.data.id)
        if event.event in FINAL_MESSAGE_EVENTS and event.data.id in delta_ids:
            assert isinstance(event.data, pa.Message)
            before = {m.id: m for m in acc.snapshot().messages}[event.data.id]
            assert before.content == event.data.content
            compared += 1
        if event.event in FINAL_STEP_EVENTS and event.data.id in delta_ids:
            assert isinstance(event.data, pa.RunStep)
            before_step = {s.id: s for s in acc.snapshot().steps}[event.data.id]
            assert comparable_calls(before_step) == comparable_calls(event.data)
            compared += 1
        acc.apply(event)
        if event.event in FINAL_MESSAGE_EVENTS:
            assert {m.id: m for m in acc.snapshot().messages}[event.data.id] == event.data
        if event.event in FINAL_STEP_EVENTS:
            assert {s.id: s for s in acc.snapshot().steps}[event.data.id] == event.data
    assert compared == AGREEMENT_CHECKS.get(names, 0)


def test_text_so_far_matches_the_completed_message() -> None:
    events = golden("A-text.sse")
    acc = RunAccumulator()
    for event in events:
        if event.event == "thread.message.completed":
            break
        acc.apply(event)
    message = only_message(acc)
    assert message.content == [pa.TextContent(text=pa.Text(value="Two plus two is four."))]
    assert message.status == "in_progress"
    assert message.run_id == "run_7Lm"


def test_tool_call_arguments_agree_with_required_action() -> None:
    snapshot = fold(golden("B1-requires-action.sse")).snapshot()
    assert snapshot.status == "requires_action"
    assert snapshot.run is not None
    assert snapshot.run.required_action is not None
    required = snapshot.run.required_action.submit_tool_outputs.tool_calls
    (step,) = snapshot.steps
    assert isinstance(step.step_details, pa.ToolCallsStepDetails)
    assert step.step_details.tool_calls == [
        pa.FunctionToolCall(
            id="call_C3",
            function=pa.FunctionCall(name="get_weather", arguments='{"city":"Oslo"}', output=None),
        )
    ]
    assert [(c.id, c.function.name, c.function.arguments) for c in required] == [
        ("call_C3", "get_weather", '{"city":"Oslo"}')
    ]


def test_parallel_tool_calls_merge_by_index() -> None:
    snapshot = fold(golden("M-parallel-tool-calls.sse")).snapshot()
    assert snapshot.run is not None
    assert snapshot.run.required_action is not None
    required = snapshot.run.required_action.submit_tool_outputs.tool_calls
    (step,) = snapshot.steps
    assert isinstance(step.step_details, pa.ToolCallsStepDetails)
    calls = step.step_details.tool_calls
    assert [
        (c.id, c.function.name, c.function.arguments)
        for c in calls
        if isinstance(c, pa.FunctionToolCall)
    ] == [(c.id, c.function.name, c.function.arguments) for c in required]
    assert len(calls) == 2


def test_code_interpreter_and_annotations_accumulate() -> None:
    events = golden("K-code-interpreter-file-search.sse")
    acc = RunAccumulator()
    for event in events:
        if event.event == "thread.message.completed":
            break
        acc.apply(event)
    snapshot = acc.snapshot()
    message = snapshot.messages[0]
    text_part, image = message.content
    assert isinstance(text_part, pa.TextContent)
    assert text_part.text.value == "Total sales were 15237.5【4:0†sales.csv】 (chart attached)."
    (annotation,) = text_part.text.annotations
    assert isinstance(annotation, pa.FileCitationAnnotation)
    assert text_part.text.value[annotation.start_index : annotation.end_index] == annotation.text
    assert image == pa.ImageFileContent(image_file=pa.ImageFile(file_id="file_IMG1"))


# -- snapshot metadata ---------------------------------------------------------------------------


def test_snapshot_carries_run_and_thread_ids_and_usage() -> None:
    snapshot = fold(golden("A-text.sse")).snapshot()
    assert (snapshot.run_id, snapshot.thread_id, snapshot.status) == (
        "run_7Lm",
        "thread_9Qx",
        "completed",
    )
    assert snapshot.usage == pa.Usage(prompt_tokens=57, completion_tokens=7, total_tokens=64)
    assert snapshot.done
    assert snapshot.error is None


def test_thread_and_run_snapshot_has_the_thread() -> None:
    snapshot = fold(golden("J-thread-and-run.sse")).snapshot()
    assert snapshot.thread is not None
    assert snapshot.thread.id == snapshot.thread_id == "thread_J0"
    assert snapshot.run_id == "run_J1"


def test_usage_is_the_latest_known_run_usage() -> None:
    first = golden("B1-requires-action.sse")
    acc = fold(first)
    assert acc.snapshot().usage == pa.Usage(prompt_tokens=80, completion_tokens=16, total_tokens=96)
    assert acc.snapshot().done
    second = golden("B2-after-submit.sse")
    acc.apply(second[1])  # thread.run.queued: usage null, a new stream for the same run
    assert acc.snapshot().usage == pa.Usage(prompt_tokens=80, completion_tokens=16, total_tokens=96)
    assert not acc.snapshot().done
    for event in second[2:]:
        acc.apply(event)
    snapshot = acc.snapshot()
    assert snapshot.usage == pa.Usage(prompt_tokens=190, completion_tokens=25, total_tokens=215)
    assert [s.id for s in snapshot.steps] == ["step_T1", "step_M2"]
    assert [m.id for m in snapshot.messages] == ["msg_D4"]


def test_error_and_terminal_states() -> None:
    snapshot = fold(golden("C-error-event.sse")).snapshot()
    assert snapshot.error is not None
    assert snapshot.error.code == "server_error"
    assert snapshot.status == "in_progress"
    assert not snapshot.done
    assert fold(golden("C2-error-wrapped.sse")).snapshot().error == snapshot.error
    failed = fold(golden("F-run-failed.sse")).snapshot()
    assert failed.status == "failed"
    assert failed.run is not None
    assert failed.run.last_error is not None
    cancelled = fold(golden("H-run-cancelled.sse")).snapshot()
    assert cancelled.status == "cancelled"
    assert cancelled.messages[0].status == "incomplete"
    assert cancelled.steps[0].status == "cancelled"


def test_unknown_events_are_ignored() -> None:
    events = golden("I-unknown-event.sse")
    snapshot = fold(events).snapshot()
    known = fold([e for e in events if not isinstance(e, pa.UnknownEvent)]).snapshot()
    assert snapshot == known


# -- merge rules ---------------------------------------------------------------------------------


def test_annotations_merge_by_index_and_integers_replace() -> None:
    acc = fold(
        [
            message_created(),
            message_delta("msg_1", text(0, "see ", annotations=[])),
            message_delta(
                "msg_1",
                text(
                    0,
                    "[1]",
                    annotations=[
                        {"index": 0, "type": "file_citation", "text": "[1", "start_index": 4}
                    ],
                ),
            ),
            message_delta(
                "msg_1",
                text(
                    0,
                    "",
                    annotations=[
                        {
                            "index": 0,
                            "type": "file_citation",
                            "text": "]",
                            "start_index": 4,
                            "end_index": 7,
                            "file_citation": {"file_id": "file_9"},
                        },
                        {"index": 1, "type": "file_path", "file_path": {"file_id": "file_8"}},
                    ],
                ),
            ),
        ]
    )
    (part,) = only_message(acc).content
    assert part == pa.TextContent(
        text=pa.Text(
            value="see [1]",
            annotations=[
                pa.FileCitationAnnotation(
                    text="[1]",
                    start_index=4,
                    end_index=7,
                    file_citation=pa.FileCitation(file_id="file_9"),
                ),
                pa.FilePathAnnotation(file_path=pa.FilePath(file_id="file_8")),
            ],
        )
    )


def test_content_parts_merge_by_index() -> None:
    acc = fold(
        [
            message_created(),
            message_delta("msg_1", text(0, "a")),
            message_delta(
                "msg_1", {"index": 2, "type": "image_url", "image_url": {"url": "https://x/"}}
            ),
            message_delta("msg_1", text(0, "b")),
            message_delta(
                "msg_1",
                {"index": 2, "type": "image_url", "image_url": {"url": "y.png", "detail": "low"}},
            ),
            message_delta("msg_1", {"index": 1, "type": "refusal", "refusal": "no"}),
            message_delta("msg_1", {"index": 1, "type": "refusal", "refusal": "pe"}),
            message_delta(
                "msg_1", {"index": 3, "type": "image_file", "image_file": {"file_id": "f"}}
            ),
            message_delta(
                "msg_1", {"index": 3, "type": "image_file", "image_file": {"detail": "high"}}
            ),
        ]
    )
    assert only_message(acc).content == [
        pa.TextContent(text=pa.Text(value="ab")),
        pa.RefusalContent(refusal="nope"),
        pa.ImageURLContent(image_url=pa.ImageURL(url="https://x/y.png", detail="low")),
        pa.ImageFileContent(image_file=pa.ImageFile(file_id="f", detail="high")),
    ]


def test_new_type_at_an_index_replaces_the_part() -> None:
    acc = fold(
        [
            message_created(),
            message_delta("msg_1", text(0, "draft")),
            message_delta("msg_1", {"index": 0, "type": "refusal", "refusal": "no"}),
        ]
    )
    assert only_message(acc).content == [pa.RefusalContent(refusal="no")]


def test_unknown_content_delta_is_kept_at_its_index() -> None:
    audio = {"index": 1, "type": "audio", "audio": {"id": "a"}}
    acc = fold([message_created(), message_delta("msg_1", text(0, "hi"), audio)])
    assert only_message(acc).content == [
        pa.TextContent(text=pa.Text(value="hi")),
        pa.UnknownVariant(original_type="audio", raw=audio),
    ]


def test_role_delta_replaces() -> None:
    acc = fold(
        [
            message_created(),
            decode(
                "thread.message.delta",
                {"id": "msg_1", "object": "thread.message.delta", "delta": {"role": "user"}},
            ),
        ]
    )
    assert only_message(acc).role == "user"


def test_function_call_fragments() -> None:
    acc = fold(
        [
            step_created(),
            step_delta(
                "step_1", function(0, id="call_1", name="lookup", arguments="", output=None)
            ),
            step_delta("step_1", function(0, arguments='{"q":')),
            step_delta("step_1", function(0, arguments='"x"}')),
            # A repeated name replaces (it is an identifier), it is not appended.
            step_delta("step_1", function(0, name="lookup")),
        ]
    )
    assert only_calls(acc) == [
        pa.FunctionToolCall(
            id="call_1", function=pa.FunctionCall(name="lookup", arguments='{"q":"x"}')
        )
    ]


def test_code_interpreter_fragments_and_outputs() -> None:
    acc = fold(
        [
            step_created(),
            step_delta(
                "step_1",
                {
                    "index": 0,
                    "id": "call_c",
                    "type": "code_interpreter",
                    "code_interpreter": {"input": "", "outputs": []},
                },
            ),
            step_delta(
                "step_1",
                {"index": 0, "type": "code_interpreter", "code_interpreter": {"input": "print("}},
            ),
            step_delta(
                "step_1",
                {
                    "index": 0,
                    "type": "code_interpreter",
                    "code_interpreter": {
                        "input": "1)",
                        "outputs": [{"index": 1, "type": "image", "image": {"file_id": "img"}}],
                    },
                },
            ),
            step_delta(
                "step_1",
                {
                    "index": 0,
                    "type": "code_interpreter",
                    "code_interpreter": {"outputs": [{"index": 0, "type": "logs", "logs": "1"}]},
                },
            ),
            step_delta(
                "step_1",
                {
                    "index": 0,
                    "type": "code_interpreter",
                    "code_interpreter": {"outputs": [{"index": 0, "type": "logs", "logs": "\n"}]},
                },
            ),
            step_delta(
                "step_1", {"index": 1, "id": "call_f", "type": "file_search", "file_search": {}}
            ),
        ]
    )
    assert only_calls(acc) == [
        pa.CodeInterpreterToolCall(
            id="call_c",
            code_interpreter=pa.CodeInterpreter(
                input="print(1)",
                outputs=[
                    pa.CodeInterpreterLogs(logs="1\n"),
                    pa.CodeInterpreterImageOutput(image=pa.CodeInterpreterImage(file_id="img")),
                ],
            ),
        ),
        pa.FileSearchToolCall(id="call_f", file_search=pa.FileSearchCall()),
    ]


def test_deltas_without_a_created_event_start_from_a_stub() -> None:
    acc = fold(
        [
            decode(
                "thread.run.in_progress", {"id": "run_1", "object": "thread.run", "thread_id": "t"}
            ),
            message_delta("msg_x", text(0, "orphan")),
            step_delta("step_x", function(0, id="call_1", name="f", arguments="{}")),
        ]
    )
    snapshot = acc.snapshot()
    (message,) = snapshot.messages
    assert (message.id, message.run_id, message.thread_id) == ("msg_x", "run_1", "t")
    assert message.content == [pa.TextContent(text=pa.Text(value="orphan"))]
    (step,) = snapshot.steps
    assert (step.id, step.run_id) == ("step_x", "run_1")


def test_deltas_after_a_full_object_continue_from_its_content() -> None:
    completed = decode(
        "thread.message.completed",
        {
            "id": "msg_1",
            "object": "thread.message",
            "content": [
                {
                    "type": "text",
                    "text": {
                        "value": "ab",
                        "annotations": [
                            {"type": "file_path", "text": "ab", "end_index": 2, "file_path": {}}
                        ],
                    },
                }
            ],
        },
    )
    acc = fold([completed, message_delta("msg_1", text(0, "c"))])
    (part,) = only_message(acc).content
    assert isinstance(part, pa.TextContent)
    assert part.text.value == "abc"
    assert part.text.annotations == [pa.FilePathAnnotation(text="ab", end_index=2)]


def test_in_progress_event_keeps_accumulated_deltas() -> None:
    acc = fold([message_created(), message_delta("msg_1", text(0, "kept"))])
    acc.apply(message_created())  # e.g. thread.message.in_progress repeating content: []
    assert only_message(acc).content == [pa.TextContent(text=pa.Text(value="kept"))]


def test_message_creation_step_delta() -> None:
    acc = fold(
        [
            decode(
                "thread.run.step.delta",
                {
                    "id": "step_m",
                    "object": "thread.run.step.delta",
                    "delta": {
                        "step_details": {
                            "type": "message_creation",
                            "message_creation": {"message_id": "msg_9"},
                        }
                    },
                },
            )
        ]
    )
    (step,) = acc.snapshot().steps
    assert step.step_details == pa.MessageCreationStepDetails(
        message_creation=pa.MessageCreation(message_id="msg_9")
    )


def test_repeated_snapshots_see_new_fragments() -> None:
    acc = fold(
        [
            message_created(),
            message_delta("msg_1", text(0, "a")),
            message_delta("msg_1", text(0, "b")),
        ]
    )
    first = only_message(acc)
    acc.apply(message_delta("msg_1", text(0, "c")))
    second = only_message(acc)
    assert first.content == [pa.TextContent(text=pa.Text(value="ab"))]
    assert second.content == [pa.TextContent(text=pa.Text(value="abc"))]


fragments = st.lists(st.tuples(st.integers(0, 3), st.text(max_size=8)), max_size=40)


@given(text_fragments=fragments, argument_fragments=fragments)
def test_any_interleaving_joins_per_index(
    text_fragments: list[tuple[int, str]], argument_fragments: list[tuple[int, str]]
) -> None:
    acc = RunAccumulator()
    acc.apply(message_created())
    acc.apply(step_created())
    for index, value in text_fragments:
        acc.apply(message_delta("msg_1", text(index, value)))
    for index, value in argument_fragments:
        acc.apply(step_delta("step_1", function(index, arguments=value)))
    snapshot = acc.snapshot()
    expected_text: dict[int, str] = {}
    for index, value in text_fragments:
        expected_text[index] = expected_text.get(index, "") + value
    assert [p.text.value for p in snapshot.messages[0].content] == [  # type: ignore[union-attr]
        expected_text[i] for i in sorted(expected_text)
    ]
    expected_args: dict[int, str] = {}
    for index, value in argument_fragments:
        expected_args[index] = expected_args.get(index, "") + value
    details = snapshot.steps[0].step_details
    assert isinstance(details, pa.ToolCallsStepDetails)
    assert [c.function.arguments for c in details.tool_calls] == [  # type: ignore[union-attr]
        expected_args[i] for i in sorted(expected_args)
    ]


# -- encoding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_snapshot_encodes_and_round_trips(path: Path) -> None:
    events = golden(path.name)
    acc = RunAccumulator()
    for event in events[: len(events) // 2]:
        acc.apply(event)
    snapshot = acc.snapshot()
    encoded = encode_snapshot(snapshot)
    assert encoded == msgspec.json.encode(snapshot)
    assert msgspec.json.decode(encoded, type=RunSnapshot) == snapshot
    assert set(json.loads(encoded)) >= {"run_id", "thread_id", "run", "messages", "steps", "usage"}


def test_empty_snapshot() -> None:
    snapshot = RunAccumulator().snapshot()
    assert snapshot == RunSnapshot()
    assert json.loads(encode_snapshot(snapshot))["messages"] == []


# -- full objects after a broken stream (what runcast publishes when it recovers a run) ----------


def message_completed(message_id: str, value: str) -> pa.AssistantStreamEvent:
    return decode(
        "thread.message.completed",
        {
            "id": message_id,
            "object": "thread.message",
            "thread_id": "thread_1",
            "run_id": "run_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "text", "text": {"value": value, "annotations": []}}],
        },
    )


def step_with_calls(event: str, arguments: str) -> pa.AssistantStreamEvent:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return decode(
        event,
        {
            "id": "step_1",
            "object": "thread.run.step",
            "thread_id": "thread_1",
            "run_id": "run_1",
            "type": "tool_calls",
            "status": "in_progress",
            "step_details": {"type": "tool_calls", "tool_calls": [call]},
        },
    )


def test_completed_message_replaces_partial_delta_text() -> None:
    acc = fold([message_created(), message_delta("msg_1", text(0, "Two plus"))])
    acc.snapshot()  # a snapshot taken mid-answer must not pin the partial text
    acc.apply(message_delta("msg_1", text(0, " tw")))
    acc.apply(message_completed("msg_1", "Two plus two is four."))
    message = only_message(acc)
    assert message.status == "completed"
    assert message.content[0] == pa.TextContent(text=pa.Text(value="Two plus two is four."))
    # Later deltas of the same message build on the completed text.
    acc.apply(message_delta("msg_1", text(0, "!")))
    assert only_message(acc).content[0] == pa.TextContent(
        text=pa.Text(value="Two plus two is four.!")
    )


def test_completed_message_never_announced_is_added_whole() -> None:
    acc = fold([message_completed("msg_9", "Recovered.")])
    assert only_message(acc).content == [pa.TextContent(text=pa.Text(value="Recovered."))]


def test_full_step_listing_its_calls_replaces_partial_arguments() -> None:
    acc = fold(
        [step_created(), step_delta("step_1", function(0, id="call_1", name="f", arguments='{"ci'))]
    )
    acc.apply(step_with_calls("thread.run.step.in_progress", '{"city":"Oslo"}'))
    (call,) = only_calls(acc)
    assert isinstance(call, pa.FunctionToolCall)
    assert call.function.arguments == '{"city":"Oslo"}'


def test_full_step_without_calls_keeps_accumulated_arguments() -> None:
    partial = step_delta("step_1", function(0, id="call_1", name="f", arguments='{"ci'))
    acc = fold([step_created(), partial])
    acc.apply(step_created())  # an empty tool_calls list says nothing about the calls
    (call,) = only_calls(acc)
    assert isinstance(call, pa.FunctionToolCall)
    assert call.function.arguments == '{"ci'


def test_nbytes_estimates_what_the_state_holds() -> None:
    acc = RunAccumulator()
    assert acc.nbytes == 0
    acc.apply(message_created(), 300)
    assert acc.nbytes == 300 + _OBJECT_OVERHEAD
    # Text deltas count the characters they keep, not the JSON around them.
    acc.apply(message_delta("msg_1", text(0, "hello ")), 180)
    acc.apply(message_delta("msg_1", text(0, "wörld")), 180)
    deltas = len("hello ") + FRAGMENT_OVERHEAD + 4 * len("wörld") + FRAGMENT_OVERHEAD
    assert acc.nbytes == 300 + _OBJECT_OVERHEAD + deltas
    # A later full message replaces the earlier one; a final one also the merged deltas.
    acc.apply(message_created(), 320)
    assert acc.nbytes == 320 + _OBJECT_OVERHEAD + deltas
    completed = decode(
        "thread.message.completed",
        {
            "id": "msg_1",
            "object": "thread.message",
            "thread_id": "thread_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "text", "text": {"value": "hello wörld", "annotations": []}}],
        },
    )
    acc.apply(completed, 400)
    assert acc.nbytes == 400 + _OBJECT_OVERHEAD
    # Other deltas count their JSON; a step's final event replaces them.
    acc.apply(step_created(), 250)
    acc.apply(step_delta("step_1", function(0, id="call_1", name="f", arguments="{")), 200)
    assert acc.nbytes == 400 + 250 + 2 * _OBJECT_OVERHEAD + 200
    run = {"id": "run_1", "object": "thread.run", "thread_id": "thread_1", "status": "queued"}
    acc.apply(decode("thread.run.created", run), 500)
    acc.apply(decode("thread.run.in_progress", {**run, "status": "in_progress"}), 510)
    assert acc.nbytes == 400 + 250 + 510 + 3 * _OBJECT_OVERHEAD + 200
