"""Responses stream parser: decode_event on every event type, wire deviations, golden streams,
the reducer against ``response.completed`` and the openai SDK's own types and accumulator."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent as SDKStreamEvent
from pydantic import TypeAdapter

import parsers.responses as pr
from parsers.errors import EventDecodeError, RemoteProtocolError
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).resolve().parents[1] / "data" / "responses"
GOLDEN = sorted(DATA.glob("*.sse"))
SDK_MEMBERS = typing.get_args(typing.get_args(SDKStreamEvent)[0])
SDK_TYPES = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in SDK_MEMBERS}
SDK_ADAPTER: TypeAdapter[Any] = TypeAdapter(SDKStreamEvent)
# Events that only restate what the reducer built from the deltas.
RESTATING = {
    "response.completed",
    "response.output_item.done",
    "response.content_part.done",
    "response.output_text.done",
    "response.refusal.done",
    "response.function_call_arguments.done",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
}


def sse(data: bytes | str | dict[str, Any], event: str = "message") -> ServerSentEvent:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return ServerSentEvent(event=event, data_bytes=data)


def decode(data: bytes | str | dict[str, Any]) -> pr.ResponseStreamEvent:
    return pr.decode_event(sse(data))


def golden_sse(path: Path) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(path.read_bytes()) + decoder.close()
    assert not decoder.truncated
    return events


def fold(events: list[pr.ResponseStreamEvent]) -> pr.ResponseAccumulator:
    acc = pr.ResponseAccumulator()
    for event in events:
        acc.apply(event)
    return acc


def final_response(path: Path) -> dict[str, Any] | None:
    for source in golden_sse(path):
        payload = json.loads(source.data_bytes) if source.data_bytes != b"[DONE]" else {}
        if payload.get("type") in {"response.completed", "response.incomplete"}:
            response: dict[str, Any] = payload["response"]
            return response
    return None


# -- the catalogue --------------------------------------------------------------------------------


def test_known_types_are_the_sdk_union_and_keepalive() -> None:
    assert len(SDK_TYPES) >= 58
    assert {*SDK_TYPES, "keepalive"} == pr.KNOWN_EVENT_TYPES


@pytest.mark.parametrize("type_", sorted(SDK_TYPES))
def test_every_type_decodes_to_its_struct_with_only_type_required(type_: str) -> None:
    event = decode({"type": type_})
    assert isinstance(event, msgspec.Struct) and not isinstance(event, pr.UnknownEvent)
    assert event.type == type_
    assert event.sequence_number is None
    with_seq = decode({"type": type_, "sequence_number": 7, "future_field": [1]})
    assert type(with_seq) is type(event)
    assert with_seq.sequence_number == 7


@pytest.mark.parametrize("type_", sorted(SDK_TYPES))
def test_every_sdk_field_is_modelled(type_: str) -> None:
    ours = type(decode({"type": type_}))
    sdk_fields = set(SDK_TYPES[type_].model_fields) - {"type"}
    assert sdk_fields <= set(ours.__struct_fields__), sdk_fields - set(ours.__struct_fields__)


def test_terminal_types() -> None:
    assert {"response.completed", "response.failed", "response.incomplete"} == (
        pr.TERMINAL_EVENT_TYPES
    )


# -- wire deviations ------------------------------------------------------------------------------


def test_dispatch_is_on_the_json_type_not_the_event_line() -> None:
    data = {"type": "response.output_text.delta", "delta": "x", "item_id": "msg_1"}
    for name in ("message", "response.output_text.delta", "response.completed"):
        event = pr.decode_event(sse(data, event=name))
        assert type(event) is pr.OutputTextDeltaEvent
        assert event.delta == "x"


def test_obfuscation_and_logprobs_on_a_text_delta() -> None:
    event = decode(
        b'{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1",'
        b'"output_index":1,"content_index":2,"delta":"Hi","logprobs":[{"token":"Hi",'
        b'"logprob":-0.1,"top_logprobs":[{"token":"Hey","logprob":-2.5}]}],"obfuscation":"4FZh"}'
    )
    assert type(event) is pr.OutputTextDeltaEvent
    assert (event.sequence_number, event.output_index, event.content_index) == (5, 1, 2)
    assert event.obfuscation == "4FZh"
    assert event.logprobs is not None and event.logprobs[0].top_logprobs is not None
    assert event.logprobs[0].top_logprobs[0].token == "Hey"


def test_keepalive_takes_a_sequence_number() -> None:
    event = decode(b'{"type":"keepalive","sequence_number":466}')
    assert type(event) is pr.KeepaliveEvent
    assert (event.type, event.sequence_number) == ("keepalive", 466)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"response.done","sequence_number":9,"response":{"id":"resp_1"}}',
        b'{"type":"codex.rate_limits","x":[1,2,{"y":null}]}',
        b'{ "type" : "response.future.delta" , "sequence_number" : 3 }',
        b'{"type":"response.output_text.highlight","sequence_number":"not-an-int"}',
    ],
)
def test_unknown_types_keep_their_bytes(data: bytes) -> None:
    event = decode(data)
    assert type(event) is pr.UnknownEvent
    assert event.data is data or event.data == data
    assert event.type == json.loads(data)["type"]
    seq = json.loads(data).get("sequence_number")
    assert event.sequence_number == (seq if isinstance(seq, int) else None)


@pytest.mark.parametrize("data", [b"", b"  ", b"\n"])
def test_empty_data_is_an_unknown_event(data: bytes) -> None:
    event = decode(data)
    assert type(event) is pr.UnknownEvent
    assert (event.type, event.data) == ("", data)


def test_done_sentinel() -> None:
    event = decode(b"[DONE]")
    assert type(event) is pr.DoneEvent
    assert (event.type, event.sequence_number) == ("[DONE]", None)
    with pytest.raises(EventDecodeError):
        decode(b"[DONE]x")


def test_both_error_shapes_give_the_same_details() -> None:
    flat = decode(
        b'{"type":"error","sequence_number":2,"code":"rate_limit_exceeded",'
        b'"message":"Slow down","param":null}'
    )
    nested = decode(
        b'{"type":"error","sequence_number":2,"error":{"type":"rate_limit_exceeded",'
        b'"code":"rate_limit_exceeded","message":"Slow down","param":null,'
        b'"headers":{"retry-after":"1"}}}'
    )
    bare = decode(b'{"error":{"code":500,"message":"Slow down"}}')
    text = decode(b'{"type":"error","error":"Slow down"}')
    for event in (flat, nested, bare, text):
        assert type(event) is pr.ErrorEvent
        assert event.details().message == "Slow down"
    assert type(flat) is pr.ErrorEvent and type(nested) is pr.ErrorEvent
    assert flat.details().code == nested.details().code == "rate_limit_exceeded"
    assert nested.details().type == "rate_limit_exceeded"


def test_function_call_arguments_done_without_name() -> None:
    event = decode(
        b'{"type":"response.function_call_arguments.done","sequence_number":17,'
        b'"item_id":"fc_1","output_index":1,"arguments":"{}"}'
    )
    assert type(event) is pr.FunctionCallArgumentsDoneEvent
    assert (event.name, event.arguments) == (None, "{}")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"type":"response.output_text.delta","delta":5}', "response.output_text.delta"),
        (b'{"type":"response.created","response":{"id":"resp_9","status":1}}', "response.created"),
        (b'{"sequence_number":1}', "?"),
        (b'{"type":7}', "?"),
        (b"[1,2]", "?"),
        (b"not json", "?"),
        (b'{"type":"response.output_text.delta"', "?"),
        (b"\xff\xfe", "?"),
    ],
)
def test_bad_payloads_raise_event_decode_error(data: bytes, name: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(data)
    assert info.value.event == name
    if b"resp_9" in data:
        assert info.value.run_id == "resp_9"


KEYS = ["type", "sequence_number", "item_id", "output_index", "delta", "response", "item", "error"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=20,
)
type_objects = st.builds(
    lambda t, rest: {**rest, "type": t} if isinstance(rest, dict) else rest,
    st.sampled_from([*sorted(pr.KNOWN_EVENT_TYPES), "response.new"]),
    json_values,
)


@given(
    data=st.binary(max_size=80) | (json_values | type_objects).map(lambda v: json.dumps(v).encode())
)
def test_any_payload_decodes_or_raises_event_decode_error(data: bytes) -> None:
    try:
        event = decode(data)
    except EventDecodeError:
        return
    assert isinstance(event, pr.ResponseStreamEvent.__args__)  # type: ignore[attr-defined]


# -- golden streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_stream_decodes_and_agrees_with_the_sdk(path: Path) -> None:
    """Every event has its typed class, with the fields the SDK reads from the same JSON."""
    for source in golden_sse(path):
        event = pr.decode_event(source)
        if source.data_bytes == b"[DONE]":
            assert type(event) is pr.DoneEvent
            continue
        raw = json.loads(source.data_bytes)
        assert event.type == raw["type"]
        assert event.sequence_number == raw["sequence_number"]
        if source.event != "message":
            assert source.event == raw["type"]
        if raw["type"] not in SDK_TYPES:
            assert type(event) in (pr.KeepaliveEvent, pr.UnknownEvent)
            continue
        if raw["type"] == "error" and "error" in raw:
            continue  # the nested shape is not the SDK's ResponseErrorEvent (the SDK raises)
        if raw["type"] == "response.function_call_arguments.done":
            raw.setdefault("name", None)
        sdk = SDK_ADAPTER.validate_python(raw)
        assert sdk.type == event.type
        for field, value in sdk.model_dump(exclude_unset=True).items():
            if field == "type":
                continue
            ours = msgspec.to_builtins(getattr(event, field))
            if isinstance(value, dict) and isinstance(ours, dict):
                ours = {k: v for k, v in ours.items() if k in value}
                value = {k: v for k, v in value.items() if k in ours}
            assert ours == value, (raw["type"], field)


def test_data_only_frames_decode_like_named_ones() -> None:
    named = golden_sse(DATA / "A-text.sse")
    data_only = [ServerSentEvent(data_bytes=e.data_bytes) for e in named]
    assert [pr.decode_event(e) for e in data_only] == [pr.decode_event(e) for e in named]


def test_keepalives_comments_and_unknown_types_pass_through() -> None:
    raw = golden_sse(DATA / "I-keepalive-obfuscation.sse")
    events = [pr.decode_event(e) for e in raw]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    unknown = [(e, s) for e, s in zip(events, raw, strict=True) if type(e) is pr.UnknownEvent]
    assert [(e.type, e.data) for e, _ in unknown] == [
        ("response.output_text.highlight", s.data_bytes) for _, s in unknown
    ]
    assert sum(type(e) is pr.KeepaliveEvent for e in events) == 4
    deltas = [e for e in events if type(e) is pr.OutputTextDeltaEvent]
    assert deltas and all(e.obfuscation for e in deltas)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_reducer_agrees_with_the_final_response(path: Path) -> None:
    events = [pr.decode_event(e) for e in golden_sse(path)]
    final = final_response(path)
    snapshot = fold(events).snapshot()
    assert snapshot["sequence_number"] == max(
        e.sequence_number for e in events if e.sequence_number is not None
    )
    if final is None:
        return
    body = snapshot["response"]
    assert body["output"] == final["output"]
    # Every field of the final object, the request echo included (text, reasoning, truncation,
    # user were left out), with its wire type (created_at came back a float).
    for key, value in final.items():
        if key != "output":
            assert body[key] == value and type(body[key]) is type(value), key

    # Built from the deltas alone (no event restating the result), only statuses may differ.
    partial = fold([e for e in events if e.type not in RESTATING]).snapshot()
    unstatus = [{k: v for k, v in item.items() if k != "status"} for item in final["output"]]
    assert [
        {k: v for k, v in item.items() if k != "status"} for item in partial["response"]["output"]
    ] == unstatus


@pytest.mark.parametrize(
    "name", ["A-text.sse", "B-function-call.sse", "C-parallel-calls.sse", "D-reasoning.sse"]
)
def test_reducer_agrees_with_the_sdk_accumulator_mid_stream(name: str) -> None:
    """Before ``response.completed``, the SDK's ResponseStreamState holds what deltas built."""
    sources = golden_sse(DATA / name)
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    acc = pr.ResponseAccumulator()
    for source in sources:
        event = pr.decode_event(source)
        if event.type == "response.completed":
            break
        acc.apply(event)
        state.handle_event(
            construct_type(type_=SDKStreamEvent, value=json.loads(source.data_bytes))
        )
    sdk = state._ResponseStreamState__current_snapshot  # type: ignore[attr-defined]
    ours = acc.snapshot()["response"]["output"]
    assert len(ours) == len(sdk.output)
    for item, sdk_item in zip(ours, sdk.output, strict=True):
        if item["type"] == "message":
            assert [p.get("text") for p in item["content"]] == [
                getattr(p, "text", None) for p in sdk_item.content
            ]
        elif item["type"] == "function_call":
            assert (item["name"], item["arguments"]) == (sdk_item.name, sdk_item.arguments)


def text_deltas(*texts: str) -> list[bytes]:
    """A.sse's first four events, then these deltas as an ``ensure_ascii`` server writes them."""
    head = [source.data_bytes for source in golden_sse(DATA / "A-text.sse")[:4]]
    item = json.loads(head[2])["item"]["id"]
    return head + [
        json.dumps(
            {
                "type": "response.output_text.delta",
                "sequence_number": 4 + n,
                "item_id": item,
                "output_index": 0,
                "content_index": 0,
                "delta": text,
            }
        ).encode()
        for n, text in enumerate(texts)
    ]


def text_of(payloads: list[bytes]) -> str:
    output = fold([decode(p) for p in payloads]).snapshot()["response"]["output"]
    text: str = output[0]["content"][0]["text"]
    return text


def test_a_surrogate_pair_split_across_deltas_is_joined() -> None:
    payloads = text_deltas("smile \ud83d", "\ude00 ok")
    assert b"\\ud83d" in payloads[-2]
    assert text_of(payloads) == "smile \U0001f600 ok"
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for payload in payloads:
        state.handle_event(construct_type(type_=SDKStreamEvent, value=json.loads(payload)))
    current = state._ResponseStreamState__current_snapshot  # type: ignore[attr-defined]
    sdk = current.output[0].content[0].text
    assert sdk == "smile \ud83d\ude00 ok"
    assert sdk.encode("utf-16-le", "surrogatepass").decode("utf-16-le") == "smile \U0001f600 ok"


def test_a_half_without_its_other_half_is_u_fffd_and_the_text_is_kept() -> None:
    assert text_of(text_deltas("smile \ud83d")) == "smile \ufffd"
    assert text_of(text_deltas("a\ude00", "b\ud83d", "c")) == "a\ufffdb\ufffdc"
    item = json.loads(text_deltas()[2])
    item["item"]["content"] = [{"type": "output_text", "text": "x\ud83d", "annotations": []}]
    acc = fold([decode(p) for p in text_deltas()[:2]] + [decode(item)])
    snapshot = acc.snapshot()
    assert snapshot["response"]["output"][0]["content"][0]["text"] == "x\ufffd"
    assert msgspec.json.decode(msgspec.json.encode(snapshot)) == snapshot


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"response.output_text.delta","delta":5,"x":"\\ud83d"}',
        b'{"type":"response.output_text.delta","delta":"\\ud83d","x":NaN}',
        b'{"type":"response.output_text.delta","delta":"\\ud83d"',
    ],
)
def test_bad_payloads_with_a_lone_surrogate_still_raise(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(data)


def test_failed_and_error_streams() -> None:
    flat = fold([pr.decode_event(e) for e in golden_sse(DATA / "F1-error-flat.sse")]).snapshot()
    assert flat["response"]["status"] == "failed"
    assert flat["response"]["error"]["code"] == "server_error"
    assert flat["error"]["code"] == "server_error"
    nested = fold([pr.decode_event(e) for e in golden_sse(DATA / "F2-error-nested.sse")])
    snap = nested.snapshot()
    assert snap["error"] == {
        "type": "insufficient_quota",
        "code": "credit_balance_exhausted",
        "message": "Your credit balance is too low to access the API.",
        "param": None,
    }
    assert snap["response"]["status"] == "queued"
    failed = fold([pr.decode_event(e) for e in golden_sse(DATA / "G-failed.sse")]).snapshot()
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["output"][0]["content"][0]["text"] == "Hi! It\u2019s"
    assert failed["response"]["usage"]["output_tokens"] == 4


def test_done_after_completion_is_recorded() -> None:
    events = [pr.decode_event(e) for e in golden_sse(DATA / "J-data-only-done.sse")]
    assert type(events[-1]) is pr.DoneEvent
    assert events[-2].type == "response.completed"
    assert fold(events).snapshot()["done"] is True
    assert fold(events[:-2]).snapshot()["done"] is False


@pytest.mark.parametrize("golden", ["A-text.sse", "G-failed.sse"])
def test_a_response_is_done_at_its_terminal_event_without_done(golden: str) -> None:
    # OpenAI never sends [DONE] on Responses streams: a finished response said "done": false
    # for good, so a late joiner reading the snapshot took it for one still running.
    events = [pr.decode_event(e) for e in golden_sse(DATA / golden)]
    assert events[-1].type in ("response.completed", "response.failed")
    assert fold(events).snapshot()["done"] is True
    assert fold(events[:-1]).snapshot()["done"] is False


def test_deltas_without_announced_item_start_a_stub() -> None:
    """A resumed stream (``starting_after``) or a server that skips ``output_item.added``."""
    acc = fold(
        [
            decode(
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_9",
                    "output_index": 1,
                    "content_index": 0,
                    "delta": "Hel",
                    "sequence_number": 12,
                }
            ),
            decode(
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_9",
                    "output_index": 1,
                    "content_index": 0,
                    "delta": "lo",
                    "sequence_number": 13,
                }
            ),
            decode(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": "fc_9",
                    "output_index": 2,
                    "delta": "{}",
                    "sequence_number": 14,
                }
            ),
            decode(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": "fc_9",
                    "output_index": 2,
                    "arguments": '{"a":1}',
                    "name": "f",
                }
            ),
        ]
    )
    output = acc.snapshot()["response"]["output"]
    assert output[0]["id"] == "msg_9"
    assert output[0]["content"][0]["text"] == "Hello"
    assert (output[1]["id"], output[1]["arguments"], output[1]["name"]) == ("fc_9", '{"a":1}', "f")
    assert acc.sequence_number == 14


def test_snapshot_is_independent_and_integers_are_set() -> None:
    sources = golden_sse(DATA / "A-text.sse")
    acc = pr.ResponseAccumulator()
    for source in sources[:6]:
        acc.apply(pr.decode_event(source))
    first = acc.snapshot()
    first["response"]["output"][0]["content"][0]["text"] = "mutated"
    again = acc.snapshot()
    assert again["response"]["output"][0]["content"][0]["text"] == "Hi!"
    # A repeated item event replaces, never adds: output_index stays a position.
    acc.apply(pr.decode_event(sources[2]))
    assert len(acc.snapshot()["response"]["output"]) == 1
    assert json.loads(msgspec.json.encode(again)) == again


@given(st.data())
def test_chunking_never_changes_the_snapshot(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(GOLDEN))
    stream = path.read_bytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = SSEDecoder()
    acc = pr.ResponseAccumulator()
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for source in decoder.feed(stream[start:end]):
            acc.apply(pr.decode_event(source))
    decoder.close()
    whole = fold([pr.decode_event(e) for e in golden_sse(path)])
    assert acc.snapshot() == whole.snapshot()


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_the_protocol_error(stream: bytes) -> None:
    decoder = SSEDecoder()
    acc = pr.ResponseAccumulator()
    try:
        for source in decoder.feed(stream) + decoder.close():
            acc.apply(pr.decode_event(source))
    except RemoteProtocolError:
        return
    acc.snapshot()
