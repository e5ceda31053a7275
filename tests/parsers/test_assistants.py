"""Typed Assistants events: decode_event, the models, tolerance, golden streams, SDK agreement."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.beta import Thread as SDKThread
from openai.types.beta.threads import Message as SDKMessage
from openai.types.beta.threads import MessageDeltaEvent as SDKMessageDelta
from openai.types.beta.threads import Run as SDKRun
from openai.types.beta.threads.runs import RunStep as SDKRunStep
from openai.types.beta.threads.runs import RunStepDeltaEvent as SDKRunStepDelta
from openai.types.shared import ErrorObject as SDKErrorObject

import parsers.assistants as pa
from parsers.errors import EventDecodeError, RemoteProtocolError
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).resolve().parents[1] / "data" / "assistants"
GOLDEN = sorted(DATA.glob("*.sse"))

# Spec §3, in table order.
SPEC_EVENTS = {
    "thread.created": pa.ThreadEvent,
    **{
        f"thread.run.{s}": pa.RunEvent
        for s in [
            "created",
            "queued",
            "in_progress",
            "requires_action",
            "completed",
            "incomplete",
            "failed",
            "cancelling",
            "cancelled",
            "expired",
        ]
    },
    **{
        f"thread.run.step.{s}": pa.RunStepEvent
        for s in ["created", "in_progress", "completed", "failed", "cancelled", "expired"]
    },
    "thread.run.step.delta": pa.RunStepDeltaEvent,
    **{
        f"thread.message.{s}": pa.MessageEvent
        for s in ["created", "in_progress", "completed", "incomplete"]
    },
    "thread.message.delta": pa.MessageDeltaEvent,
    "error": pa.ErrorEvent,
    "done": pa.DoneEvent,
}

RUN = {"id": "run_1", "object": "thread.run", "thread_id": "thread_1", "status": "in_progress"}
STEP = {"id": "step_1", "object": "thread.run.step", "run_id": "run_1", "status": "in_progress"}
MESSAGE = {"id": "msg_1", "object": "thread.message", "run_id": "run_1", "role": "assistant"}
SAMPLE_PAYLOADS: dict[type, dict[str, Any]] = {
    pa.ThreadEvent: {"id": "thread_1", "object": "thread", "created_at": 1},
    pa.RunEvent: RUN,
    pa.RunStepEvent: STEP,
    pa.RunStepDeltaEvent: {"id": "step_1", "object": "thread.run.step.delta", "delta": {}},
    pa.MessageEvent: MESSAGE,
    pa.MessageDeltaEvent: {"id": "msg_1", "object": "thread.message.delta", "delta": {}},
    pa.ErrorEvent: {"message": "boom", "type": "server_error"},
}


def sse(event: str, data: bytes | str | dict[str, Any]) -> ServerSentEvent:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return ServerSentEvent(event=event, data_bytes=data)


def decode(event: str, data: bytes | str | dict[str, Any]) -> pa.AssistantStreamEvent:
    return pa.decode_event(sse(event, data))


def golden_sse(path: Path) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(path.read_bytes())
    events += decoder.close()
    assert not decoder.truncated
    return events


def golden(name: str) -> list[pa.AssistantStreamEvent]:
    return [pa.decode_event(e) for e in golden_sse(DATA / name)]


# -- event names ----------------------------------------------------------------------------------


def test_known_events_are_exactly_the_spec_catalogue() -> None:
    assert set(SPEC_EVENTS) == pa.KNOWN_EVENTS


@pytest.mark.parametrize("name", sorted(set(SPEC_EVENTS) - {"done"}))
def test_every_event_name_decodes_to_its_payload_type(name: str) -> None:
    cls = SPEC_EVENTS[name]
    event = decode(name, SAMPLE_PAYLOADS[cls])
    assert type(event) is cls
    assert event.event == name


def test_terminal_run_statuses() -> None:
    assert {"completed", "incomplete", "failed", "cancelled", "expired"} == pa.TERMINAL_RUN_STATUSES
    assert "requires_action" not in pa.TERMINAL_RUN_STATUSES


@pytest.mark.parametrize(
    ("name", "data"),
    [("done", "[DONE]"), ("message", "[DONE]"), ("thread.message.delta", "[DONE]"), ("done", "")],
)
def test_done_is_recognised_before_json(name: str, data: str) -> None:
    event = decode(name, data)
    assert isinstance(event, pa.DoneEvent)
    assert event.event == name
    assert event.data == data


def test_done_prefix_is_not_done() -> None:
    # Exact match (spec Appendix C), unlike the SDK's startswith: "[DONE]x" is a broken payload.
    with pytest.raises(EventDecodeError):
        decode("thread.run.created", "[DONE]x")


@pytest.mark.parametrize(
    "data", [b'{"id":"x"}', b"not json at all", b"\xff\xfe", b'{"event":"thread.run.created"}']
)
def test_unknown_event_name_keeps_raw_bytes(data: bytes) -> None:
    event = decode("thread.run.step.reasoning", data)
    assert event == pa.UnknownEvent(event="thread.run.step.reasoning", data=data)


@pytest.mark.parametrize("data", [b"", b" ", b"\n"])
@pytest.mark.parametrize("name", ["thread.run.created", "thread.message.delta", "error", "ping"])
def test_empty_data_is_an_unknown_event(name: str, data: bytes) -> None:
    event = decode(name, data)
    assert isinstance(event, pa.UnknownEvent)
    assert event.event == name


# -- decode errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "run_id"),
    [
        ("thread.run.created", b'{"id":"run_1",', None),
        (
            "thread.run.created",
            b'{"id":"run_1","object":"thread.run","created_at":"soon"}',
            "run_1",
        ),
        (
            "thread.run.step.created",
            b'{"id":"s","object":"thread.run.step","run_id":"run_2","usage":5}',
            "run_2",
        ),
        (
            "thread.message.delta",
            b'{"id":"m","object":"thread.message.delta","delta":{"content":[{"type":"text"}]}}',
            None,
        ),
        ("thread.message.delta", b"[1, 2]", None),
        ("thread.run.step.delta", b'{"object":"thread.run.step.delta"}', None),
        ("thread.message.completed", b"null", None),
        ("error", b'{"message": 3}', None),
        ("thread.created", b"\xff", None),
    ],
)
def test_bad_payload_raises_event_decode_error(name: str, data: bytes, run_id: str | None) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(name, data)
    assert info.value.event == name
    assert info.value.run_id == run_id
    assert name in str(info.value)
    assert isinstance(info.value, RemoteProtocolError)


def test_missing_delta_index_is_an_error() -> None:
    # index is the merge key (spec §4.4, §4.5); guessing one would corrupt the snapshot.
    data = {"id": "m", "object": "thread.message.delta", "delta": {"content": [{"type": "text"}]}}
    with pytest.raises(EventDecodeError, match="index"):
        decode("thread.message.delta", data)


KEYS = ["id", "object", "type", "index", "delta", "content", "text", "value", "tools"]
KEYS += ["step_details", "tool_calls", "function", "arguments", "error", "message", "outputs"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=25,
)


@given(
    name=st.sampled_from([*sorted(pa.KNOWN_EVENTS), "thread.other"]),
    data=st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_payload_decodes_or_raises_event_decode_error(name: str, data: bytes) -> None:
    try:
        event = decode(name, data)
    except EventDecodeError as exc:
        assert exc.event == name
    else:
        assert event.event == name


# -- golden streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_stream_decodes(path: Path) -> None:
    raw = golden_sse(path)
    events = [pa.decode_event(e) for e in raw]
    assert [e.event for e in events] == [e.event for e in raw]
    for event, source in zip(events, raw, strict=True):
        expected = SPEC_EVENTS.get(source.event, pa.UnknownEvent)
        if source.event in SPEC_EVENTS and not source.data_bytes:
            expected = pa.UnknownEvent
        assert type(event) is expected, source.event
    assert sum(isinstance(e, pa.DoneEvent) for e in events) <= 1
    if any(isinstance(e, pa.DoneEvent) for e in events):
        assert isinstance(events[-1], pa.DoneEvent)


def test_golden_a_text() -> None:
    events = golden("A-text.sse")
    runs = [e.data for e in events if isinstance(e, pa.RunEvent)]
    assert [r.status for r in runs] == ["queued", "queued", "in_progress", "completed"]
    assert runs[-1].usage == pa.Usage(prompt_tokens=57, completion_tokens=7, total_tokens=64)
    assert runs[-1].truncation_strategy == pa.TruncationStrategy(type="auto", last_messages=None)
    assert runs[-1].response_format == "auto"
    assert runs[-1].tool_choice == "auto"
    deltas = [e.data for e in events if isinstance(e, pa.MessageDeltaEvent)]
    first = deltas[0].delta.content
    assert first is not msgspec.UNSET
    assert first == [pa.TextDeltaBlock(index=0, text=pa.TextDelta(value="Two", annotations=[]))]
    later = deltas[1].delta.content
    assert later is not msgspec.UNSET
    block = later[0]
    assert isinstance(block, pa.TextDeltaBlock)
    assert block.text is not msgspec.UNSET
    assert block.text.annotations is msgspec.UNSET
    completed = next(e.data for e in events if e.event == "thread.message.completed")
    assert isinstance(completed, pa.Message)
    assert completed.content == [pa.TextContent(text=pa.Text(value="Two plus two is four."))]
    assert completed.attachments == []


def test_golden_b1_requires_action() -> None:
    events = golden("B1-requires-action.sse")
    run = events[-2].data
    assert isinstance(run, pa.Run)
    assert run.status == "requires_action"
    assert run.required_action is not None
    assert run.required_action.submit_tool_outputs.tool_calls == [
        pa.RequiredToolCall(
            id="call_C3",
            type="function",
            function=pa.RequiredFunction(name="get_weather", arguments='{"city":"Oslo"}'),
        )
    ]
    tool = run.tools[0]
    assert isinstance(tool, pa.FunctionTool)
    assert tool.function.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    first = events[5].data
    assert isinstance(first, pa.RunStepDelta)
    details = first.delta.step_details
    assert isinstance(details, pa.ToolCallsStepDetailsDelta)
    assert details.tool_calls == [
        pa.FunctionToolCallDelta(
            index=0,
            id="call_C3",
            function=pa.FunctionCallDelta(name="get_weather", arguments="", output=None),
        )
    ]
    later = events[6].data
    assert isinstance(later, pa.RunStepDelta)
    assert isinstance(later.delta.step_details, pa.ToolCallsStepDetailsDelta)
    call = later.delta.step_details.tool_calls[0]  # type: ignore[index]
    assert isinstance(call, pa.FunctionToolCallDelta)
    assert call.id is msgspec.UNSET
    assert call.function is not msgspec.UNSET
    assert call.function.name is msgspec.UNSET
    assert call.function.output is msgspec.UNSET


def test_golden_b2_after_submit_starts_with_completed_tool_step() -> None:
    step = golden("B2-after-submit.sse")[0].data
    assert isinstance(step, pa.RunStep)
    assert step.status == "completed"
    assert isinstance(step.step_details, pa.ToolCallsStepDetails)
    call = step.step_details.tool_calls[0]
    assert isinstance(call, pa.FunctionToolCall)
    assert call.function == pa.FunctionCall(
        name="get_weather", arguments='{"city":"Oslo"}', output='{"temp_c":4}'
    )


def test_error_event_bare_and_wrapped_forms_agree() -> None:
    bare = golden("C-error-event.sse")[-1]
    wrapped = golden("C2-error-wrapped.sse")[-1]
    assert isinstance(bare, pa.ErrorEvent)
    assert bare == wrapped
    assert bare.data == pa.ErrorObject(
        code="server_error",
        message="The server had an error while processing your request.",
        param=None,
        type="server_error",
    )


def test_error_event_with_string_error() -> None:
    event = decode("error", {"error": "quota exhausted", "code": "insufficient_quota"})
    assert event == pa.ErrorEvent(
        event="error", data=pa.ErrorObject(code="insufficient_quota", message="quota exhausted")
    )


def test_golden_failed_run_has_last_error() -> None:
    run = golden("F-run-failed.sse")[0].data
    assert isinstance(run, pa.Run)
    assert run.status in pa.TERMINAL_RUN_STATUSES
    assert run.last_error == pa.LastError(
        code="rate_limit_exceeded", message="You exceeded your current quota."
    )


def test_golden_incomplete_and_cancelled() -> None:
    incomplete = golden("G-run-incomplete.sse")
    message = next(e.data for e in incomplete if e.event == "thread.message.incomplete")
    assert isinstance(message, pa.Message)
    assert message.incomplete_details == pa.IncompleteDetails(reason="max_tokens")
    run = incomplete[-2].data
    assert isinstance(run, pa.Run)
    assert run.incomplete_details == pa.IncompleteDetails(reason="max_completion_tokens")
    cancelled = golden("H-run-cancelled.sse")
    assert [e.data.status for e in cancelled if isinstance(e, pa.RunEvent)][-2:] == [
        "cancelling",
        "cancelled",
    ]
    step = next(e.data for e in cancelled if e.event == "thread.run.step.cancelled")
    assert isinstance(step, pa.RunStep)
    assert step.cancelled_at == 1730000004


def test_golden_unknown_events_pass_through() -> None:
    events = golden("I-unknown-event.sse")
    unknown = [e for e in events if isinstance(e, pa.UnknownEvent)]
    assert [e.event for e in unknown] == ["ping", "thread.run.step.reasoning"]
    assert unknown[0].data == b""
    assert json.loads(unknown[1].data)["delta"] == {"summary": "Looking up the capital."}
    run = events[0].data
    assert isinstance(run, pa.Run)
    # tool_resources is not in the Run schema but appears in the spec's examples (§4.1).
    assert run.tool_resources == pa.ToolResources(
        code_interpreter=pa.ToolResourcesCodeInterpreter(file_ids=[])
    )


def test_golden_thread_and_run_starts_with_thread() -> None:
    events = golden("J-thread-and-run.sse")
    assert isinstance(events[0], pa.ThreadEvent)
    assert events[0].data.id == "thread_J0"
    assert events[0].data.tool_resources is not None
    assert isinstance(events[1], pa.RunEvent)
    assert events[1].data.thread_id == "thread_J0"


def test_golden_code_interpreter_and_file_search() -> None:
    events = golden("K-code-interpreter-file-search.sse")
    steps = {e.data.id: e.data for e in events if e.event == "thread.run.step.completed"}
    search = steps["step_K1"].step_details
    assert isinstance(search, pa.ToolCallsStepDetails)
    assert isinstance(search.tool_calls[0], pa.FileSearchToolCall)
    assert search.tool_calls[0].file_search.results == [
        pa.FileSearchResult(file_id="file_R1", file_name="sales.csv", score=0.82)
    ]
    code = steps["step_K2"].step_details
    assert isinstance(code, pa.ToolCallsStepDetails)
    call = code.tool_calls[0]
    assert isinstance(call, pa.CodeInterpreterToolCall)
    assert call.code_interpreter.outputs == [
        pa.CodeInterpreterLogs(logs="15237.5\n"),
        pa.CodeInterpreterImageOutput(image=pa.CodeInterpreterImage(file_id="file_IMG1")),
    ]
    message = next(e.data for e in events if e.event == "thread.message.completed")
    assert isinstance(message, pa.Message)
    text, image = message.content
    assert isinstance(text, pa.TextContent)
    annotation = text.text.annotations[0]
    assert isinstance(annotation, pa.FileCitationAnnotation)
    assert text.text.value[annotation.start_index : annotation.end_index] == annotation.text
    assert image == pa.ImageFileContent(image_file=pa.ImageFile(file_id="file_IMG1"))
    run = events[0].data
    assert isinstance(run, pa.Run)
    assert [type(t) for t in run.tools] == [pa.CodeInterpreterTool, pa.FileSearchTool]


# -- union variants -------------------------------------------------------------------------------


def run_with(**fields: Any) -> pa.Run:
    event = decode("thread.run.created", {**RUN, **fields})
    assert isinstance(event, pa.RunEvent)
    return event.data


def message_with(content: list[dict[str, Any]], **fields: Any) -> pa.Message:
    event = decode("thread.message.completed", {**MESSAGE, "content": content, **fields})
    assert isinstance(event, pa.MessageEvent)
    return event.data


def step_with(details: dict[str, Any], **fields: Any) -> pa.RunStep:
    event = decode("thread.run.step.completed", {**STEP, "step_details": details, **fields})
    assert isinstance(event, pa.RunStepEvent)
    return event.data


def message_delta(content: list[dict[str, Any]]) -> list[pa.ContentDelta]:
    event = decode(
        "thread.message.delta",
        {"id": "msg_1", "object": "thread.message.delta", "delta": {"content": content}},
    )
    assert isinstance(event, pa.MessageDeltaEvent)
    assert event.data.delta.content is not msgspec.UNSET
    return event.data.delta.content


def step_delta(calls: list[dict[str, Any]]) -> list[pa.ToolCallDelta]:
    event = decode(
        "thread.run.step.delta",
        {
            "id": "step_1",
            "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": calls}},
        },
    )
    assert isinstance(event, pa.RunStepDeltaEvent)
    details = event.data.delta.step_details
    assert isinstance(details, pa.ToolCallsStepDetailsDelta)
    assert details.tool_calls is not msgspec.UNSET
    return details.tool_calls


def test_tool_variants() -> None:
    run = run_with(
        tools=[
            {"type": "code_interpreter"},
            {
                "type": "file_search",
                "file_search": {
                    "max_num_results": 5,
                    "ranking_options": {"ranker": "auto", "score_threshold": 0.5},
                },
            },
            {"type": "function", "function": {"name": "f", "strict": True}},
        ]
    )
    assert run.tools == [
        pa.CodeInterpreterTool(),
        pa.FileSearchTool(
            file_search=pa.FileSearchSettings(
                max_num_results=5,
                ranking_options=pa.FileSearchRankingOptions(ranker="auto", score_threshold=0.5),
            )
        ),
        pa.FunctionTool(function=pa.FunctionDefinition(name="f", strict=True)),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("none", "none"),
        ("required", "required"),
        ("some_future_mode", "some_future_mode"),
        (
            {"type": "function", "function": {"name": "f"}},
            pa.NamedToolChoice(type="function", function=pa.NamedToolChoiceFunction(name="f")),
        ),
        ({"type": "file_search"}, pa.NamedToolChoice(type="file_search")),
        ({"type": "computer_use"}, pa.NamedToolChoice(type="computer_use")),
        (None, None),
    ],
)
def test_tool_choice_forms(raw: Any, expected: Any) -> None:
    assert run_with(tool_choice=raw).tool_choice == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", "auto"),
        ({"type": "text"}, pa.ResponseFormatText()),
        ({"type": "json_object"}, pa.ResponseFormatJSONObject()),
        (
            {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
            pa.ResponseFormatJSONSchema(
                json_schema=pa.JSONSchema(name="w", schema_={"type": "object"})
            ),
        ),
        (
            {"type": "yaml", "indent": 2},
            pa.UnknownVariant(original_type="yaml", raw={"type": "yaml", "indent": 2}),
        ),
    ],
)
def test_response_format_forms(raw: Any, expected: Any) -> None:
    assert run_with(response_format=raw).response_format == expected


def test_json_schema_round_trips_its_schema_key() -> None:
    fmt = pa.ResponseFormatJSONSchema(json_schema=pa.JSONSchema(name="w", schema_={"a": 1}))
    assert json.loads(msgspec.json.encode(fmt))["json_schema"]["schema"] == {"a": 1}


def test_message_content_variants() -> None:
    message = message_with(
        [
            {
                "type": "text",
                "text": {
                    "value": "see 【1】 and sandbox:/a.csv",
                    "annotations": [
                        {
                            "type": "file_citation",
                            "text": "【1】",
                            "start_index": 4,
                            "end_index": 7,
                            "file_citation": {"file_id": "file_1"},
                        },
                        {
                            "type": "file_path",
                            "text": "sandbox:/a.csv",
                            "start_index": 12,
                            "end_index": 26,
                            "file_path": {"file_id": "file_2"},
                        },
                    ],
                },
            },
            {"type": "image_file", "image_file": {"file_id": "file_3", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
            {"type": "refusal", "refusal": "I can't help with that."},
        ],
        attachments=[
            {"file_id": "file_4", "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]}
        ],
    )
    assert message.content == [
        pa.TextContent(
            text=pa.Text(
                value="see 【1】 and sandbox:/a.csv",
                annotations=[
                    pa.FileCitationAnnotation(
                        text="【1】",
                        start_index=4,
                        end_index=7,
                        file_citation=pa.FileCitation(file_id="file_1"),
                    ),
                    pa.FilePathAnnotation(
                        text="sandbox:/a.csv",
                        start_index=12,
                        end_index=26,
                        file_path=pa.FilePath(file_id="file_2"),
                    ),
                ],
            )
        ),
        pa.ImageFileContent(image_file=pa.ImageFile(file_id="file_3", detail="low")),
        pa.ImageURLContent(image_url=pa.ImageURL(url="https://x/y.png", detail="high")),
        pa.RefusalContent(refusal="I can't help with that."),
    ]
    assert message.attachments == [
        pa.Attachment(file_id="file_4", tools=[pa.CodeInterpreterTool(), pa.FileSearchTool()])
    ]


def test_message_delta_variants() -> None:
    content = message_delta(
        [
            {
                "index": 0,
                "type": "text",
                "text": {
                    "value": "x",
                    "annotations": [
                        {
                            "index": 0,
                            "type": "file_citation",
                            "start_index": 1,
                            "file_citation": {"file_id": "f", "quote": "q"},
                        },
                        {"index": 1, "type": "file_path", "file_path": {}},
                    ],
                },
            },
            {"index": 1, "type": "image_file", "image_file": {"file_id": "f2", "detail": None}},
            {"index": 2, "type": "image_url", "image_url": {"url": "https://x"}},
            {"index": 3, "type": "refusal", "refusal": "no"},
            {"index": 4, "type": "text"},
        ]
    )
    unset = msgspec.UNSET
    assert content == [
        pa.TextDeltaBlock(
            index=0,
            text=pa.TextDelta(
                value="x",
                annotations=[
                    pa.FileCitationDeltaAnnotation(
                        index=0,
                        start_index=1,
                        file_citation=pa.FileCitationDelta(file_id="f", quote="q"),
                    ),
                    pa.FilePathDeltaAnnotation(index=1, file_path=pa.FilePathDelta()),
                ],
            ),
        ),
        pa.ImageFileDeltaBlock(index=1, image_file=pa.ImageFileDelta(file_id="f2", detail=None)),
        pa.ImageURLDeltaBlock(index=2, image_url=pa.ImageURLDelta(url="https://x", detail=unset)),
        pa.RefusalDeltaBlock(index=3, refusal="no"),
        pa.TextDeltaBlock(index=4, text=unset),
    ]


def test_step_details_and_tool_call_variants() -> None:
    creation = step_with({"type": "message_creation", "message_creation": {"message_id": "m"}})
    assert creation.step_details == pa.MessageCreationStepDetails(
        message_creation=pa.MessageCreation(message_id="m")
    )
    calls = step_with(
        {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}", "output": None},
                },
                {
                    "id": "c2",
                    "type": "code_interpreter",
                    "code_interpreter": {
                        "input": "1+1",
                        "outputs": [
                            {"type": "logs", "logs": "2"},
                            {"type": "image", "image": {"file_id": "img"}},
                        ],
                    },
                },
                {
                    "id": "c3",
                    "type": "file_search",
                    "file_search": {
                        "ranking_options": {"ranker": "auto", "score_threshold": 0.1},
                        "results": [
                            {
                                "file_id": "f",
                                "file_name": "a.txt",
                                "score": 0.9,
                                "content": [{"type": "text", "text": "hello"}],
                            }
                        ],
                    },
                },
            ],
        }
    )
    assert calls.step_details == pa.ToolCallsStepDetails(
        tool_calls=[
            pa.FunctionToolCall(id="c1", function=pa.FunctionCall(name="f", arguments="{}")),
            pa.CodeInterpreterToolCall(
                id="c2",
                code_interpreter=pa.CodeInterpreter(
                    input="1+1",
                    outputs=[
                        pa.CodeInterpreterLogs(logs="2"),
                        pa.CodeInterpreterImageOutput(image=pa.CodeInterpreterImage(file_id="img")),
                    ],
                ),
            ),
            pa.FileSearchToolCall(
                id="c3",
                file_search=pa.FileSearchCall(
                    ranking_options=pa.FileSearchCallRankingOptions(
                        ranker="auto", score_threshold=0.1
                    ),
                    results=[
                        pa.FileSearchResult(
                            file_id="f",
                            file_name="a.txt",
                            score=0.9,
                            content=[pa.FileSearchResultContent(type="text", text="hello")],
                        )
                    ],
                ),
            ),
        ]
    )


def test_step_delta_variants() -> None:
    calls = step_delta(
        [
            {"index": 0, "type": "function", "function": {"arguments": "{"}},
            {
                "index": 1,
                "id": "c2",
                "type": "code_interpreter",
                "code_interpreter": {
                    "input": "x",
                    "outputs": [
                        {"index": 0, "type": "logs", "logs": "1"},
                        {"index": 1, "type": "image", "image": {"file_id": "img"}},
                    ],
                },
            },
            {"index": 2, "id": "c3", "type": "file_search", "file_search": {}},
        ]
    )
    assert calls == [
        pa.FunctionToolCallDelta(index=0, function=pa.FunctionCallDelta(arguments="{")),
        pa.CodeInterpreterToolCallDelta(
            index=1,
            id="c2",
            code_interpreter=pa.CodeInterpreterDelta(
                input="x",
                outputs=[
                    pa.CodeInterpreterLogsDelta(index=0, logs="1"),
                    pa.CodeInterpreterImageOutputDelta(
                        index=1, image=pa.CodeInterpreterImageDelta(file_id="img")
                    ),
                ],
            ),
        ),
        pa.FileSearchToolCallDelta(index=2, id="c3", file_search={}),
    ]
    creation = decode(
        "thread.run.step.delta",
        {
            "id": "s",
            "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "message_creation", "message_creation": {}}},
        },
    )
    assert isinstance(creation, pa.RunStepDeltaEvent)
    assert creation.data.delta.step_details == pa.MessageCreationStepDetailsDelta(
        message_creation=pa.MessageCreationDelta()
    )


def test_thread_payload() -> None:
    event = decode(
        "thread.created",
        {
            "id": "thread_1",
            "object": "thread",
            "created_at": 5,
            "metadata": {"k": "v"},
            "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}},
            "enabled": False,
        },
    )
    assert event == pa.ThreadEvent(
        event="thread.created",
        data=pa.Thread(
            id="thread_1",
            object="thread",
            created_at=5,
            metadata={"k": "v"},
            tool_resources=pa.ToolResources(
                file_search=pa.ToolResourcesFileSearch(vector_store_ids=["vs_1"])
            ),
        ),
    )


# -- tolerance ------------------------------------------------------------------------------------


def test_unknown_fields_and_enum_values_are_tolerated() -> None:
    run = run_with(
        status="paused_for_review",
        brand_new_field={"nested": [1, 2]},
        last_error={"code": "new_code", "message": "m", "extra": 1},
        truncation_strategy={"type": "sliding_window", "last_messages": 4},
    )
    assert run.status == "paused_for_review"
    assert run.last_error == pa.LastError(code="new_code", message="m")
    assert run.truncation_strategy == pa.TruncationStrategy(type="sliding_window", last_messages=4)


def test_only_id_and_object_are_required() -> None:
    run = run_with()
    assert (run.created_at, run.model, run.tools, run.parallel_tool_calls) == (0, "", [], True)
    step = decode("thread.run.step.created", {"id": "s", "object": "thread.run.step"}).data
    assert isinstance(step, pa.RunStep)
    assert step.step_details is None
    message = decode("thread.message.created", {"id": "m", "object": "thread.message"}).data
    assert isinstance(message, pa.Message)
    assert message.content == []
    with pytest.raises(EventDecodeError, match="object"):
        decode("thread.run.created", {"id": "run_1"})


def test_null_instructions_are_accepted() -> None:
    # The schema says string; the spec's own examples send null (§4.1).
    assert run_with(instructions=None).instructions is None


def test_step_accepts_expired_at_and_expires_at() -> None:
    details = {"type": "message_creation", "message_creation": {"message_id": "m"}}
    assert step_with(details, expired_at=7).expired_at == 7
    assert step_with(details, expires_at=8).expires_at == 8


def test_unknown_content_type_becomes_unknown_variant() -> None:
    audio = {"index": 0, "type": "audio", "audio": {"transcript": "hi"}}
    text = {"index": 1, "type": "text", "text": {"value": "ok"}}
    assert message_delta([audio, text]) == [
        pa.UnknownVariant(original_type="audio", raw=audio),
        pa.TextDeltaBlock(index=1, text=pa.TextDelta(value="ok")),
    ]


def test_unknown_types_nested_inside_known_members() -> None:
    odd_annotation = {"type": "url_citation", "url": "https://x", "start_index": 0}
    message = message_with(
        [
            {"type": "text", "text": {"value": "v", "annotations": [odd_annotation]}},
            {"type": "video_file", "video_file": {"file_id": "v"}},
        ],
        attachments=[{"file_id": "f", "tools": [{"type": "web_search"}]}],
    )
    assert message.content == [
        pa.TextContent(
            text=pa.Text(
                value="v",
                annotations=[pa.UnknownVariant(original_type="url_citation", raw=odd_annotation)],
            )
        ),
        pa.UnknownVariant(
            original_type="video_file", raw={"type": "video_file", "video_file": {"file_id": "v"}}
        ),
    ]
    assert message.attachments == [
        pa.Attachment(
            file_id="f",
            tools=[pa.UnknownVariant(original_type="web_search", raw={"type": "web_search"})],
        )
    ]


def test_unknown_tool_and_step_types() -> None:
    params = {"type": "object", "properties": {"q": {"type": "custom_kind"}}}
    run = run_with(
        tools=[
            {"type": "function", "function": {"name": "f", "parameters": params}},
            {"type": "computer_use", "display": [1, 2]},
        ]
    )
    # A JSON-Schema "type" inside parameters is data, not a union tag, and is left alone.
    assert run.tools == [
        pa.FunctionTool(function=pa.FunctionDefinition(name="f", parameters=params)),
        pa.UnknownVariant(
            original_type="computer_use", raw={"type": "computer_use", "display": [1, 2]}
        ),
    ]
    step = step_with({"type": "reasoning", "summary": "s"})
    assert step.step_details == pa.UnknownVariant(
        original_type="reasoning", raw={"type": "reasoning", "summary": "s"}
    )
    call = {"id": "c", "type": "mcp", "server": "x"}
    output = {"type": "chart", "chart": {}}
    nested = step_with(
        {
            "type": "tool_calls",
            "tool_calls": [
                call,
                {"id": "c2", "type": "code_interpreter", "code_interpreter": {"outputs": [output]}},
            ],
        }
    )
    assert nested.step_details == pa.ToolCallsStepDetails(
        tool_calls=[
            pa.UnknownVariant(original_type="mcp", raw=call),
            pa.CodeInterpreterToolCall(
                id="c2",
                code_interpreter=pa.CodeInterpreter(
                    outputs=[pa.UnknownVariant(original_type="chart", raw=output)]
                ),
            ),
        ]
    )
    delta_call = {"index": 0, "type": "mcp", "arguments": "{"}
    assert step_delta([delta_call]) == [pa.UnknownVariant(original_type="mcp", raw=delta_call)]


def test_missing_or_non_string_tag_becomes_unknown_variant() -> None:
    assert run_with(tools=[{"function": {"name": "f"}}]).tools == [
        pa.UnknownVariant(original_type="", raw={"function": {"name": "f"}})
    ]
    assert run_with(tools=[{"type": 3}]).tools == [
        pa.UnknownVariant(original_type="", raw={"type": 3})
    ]


def test_tolerant_path_still_rejects_bad_known_members() -> None:
    with pytest.raises(EventDecodeError, match="created_at"):
        run_with(tools=[{"type": "web"}], created_at="x")


def test_delta_tells_absent_from_null() -> None:
    calls = step_delta(
        [
            {"index": 0, "type": "function", "function": {"output": None}},
            {"index": 1, "type": "function", "function": {}},
        ]
    )
    first, second = calls
    assert isinstance(first, pa.FunctionToolCallDelta)
    assert isinstance(second, pa.FunctionToolCallDelta)
    assert first.function is not msgspec.UNSET
    assert second.function is not msgspec.UNSET
    assert first.function.output is None
    assert second.function.output is msgspec.UNSET
    assert b"output" not in msgspec.json.encode(second)


def test_models_are_frozen() -> None:
    run = run_with()
    with pytest.raises(AttributeError):
        run.status = "completed"  # type: ignore[misc]


# -- agreement with the official SDK types --------------------------------------------------------


def assert_covers(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict)
        for key, value in ours.items():
            if key in theirs:
                assert_covers(value, theirs[key])
            else:
                assert value is None, key
    elif isinstance(theirs, list):
        assert isinstance(ours, list)
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_covers(mine, other)
    else:
        assert ours == theirs


SDK_TYPES: dict[type, Any] = {
    pa.Run: SDKRun,
    pa.RunStep: SDKRunStep,
    pa.Message: SDKMessage,
    pa.Thread: SDKThread,
    pa.MessageDelta: SDKMessageDelta,
    pa.RunStepDelta: SDKRunStepDelta,
    pa.ErrorObject: SDKErrorObject,
}


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_payloads_validate_against_openai_sdk_types(path: Path) -> None:
    checked = 0
    for source in golden_sse(path):
        event = pa.decode_event(source)
        sdk_type = SDK_TYPES.get(type(event.data))
        if sdk_type is None:
            continue
        ours = sdk_type.model_validate(msgspec.to_builtins(event.data)).model_dump()
        raw = json.loads(source.data_bytes)
        if isinstance(event, pa.ErrorEvent):
            raw = raw.get("error", raw)
        # What we decoded says the same as the raw JSON, as the SDK sees it: shared keys agree,
        # our extra keys are defaults (None) for keys the payload left out, and keys we do not
        # model (tolerant reader) are the only ones we drop.
        assert_covers(ours, sdk_type.model_validate(raw).model_dump())
        checked += 1
    assert checked


# -- public surface -------------------------------------------------------------------------------

PUBLIC_MODULES = [
    "parsers.assistants._common",
    "parsers.assistants.run",
    "parsers.assistants.steps",
    "parsers.assistants.messages",
    "parsers.assistants.thread",
    "parsers.assistants.error_object",
    "parsers.assistants.events",
    "parsers.assistants._tolerant",
    "parsers.accumulate",
    "parsers._accumulate_content",
    "parsers._accumulate_tools",
]


def isort_style(names: list[str]) -> list[str]:
    # ruff RUF022: SCREAMING_CASE first, then CamelCase, then the rest.
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def defined_public_names(module_name: str) -> set[str]:
    source = inspect.getsource(importlib.import_module(module_name))
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_module_all_is_sorted_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == isort_style(module.__all__)
    assert set(module.__all__) == defined_public_names(module_name)


def test_package_all_re_exports_every_model() -> None:
    assert pa.__all__ == isort_style(pa.__all__)
    expected: set[str] = set()
    for module_name in PUBLIC_MODULES[:7]:
        expected.update(importlib.import_module(module_name).__all__)
    expected -= {"Model", "Tagged"}
    assert set(pa.__all__) == expected
    for name in pa.__all__:
        assert getattr(pa, name) is not None
