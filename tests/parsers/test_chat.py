"""Chat Completions stream parser: decode_chunk, golden streams with the servers' deviations, and
the reducer against the openai SDK's ChatCompletionStreamState."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk as SDKChunk

import parsers.chat as pc
from parsers.errors import EventDecodeError, RemoteProtocolError
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).resolve().parents[1] / "data" / "chat"
GOLDEN = sorted(DATA.glob("*.sse"))
# Streams the SDK's accumulator folds correctly (the others are the deviations it breaks on).
SDK_AGREES = [
    "A-text.sse",
    "B-usage.sse",
    "C-tool-call.sse",
    "D-parallel-tool-calls.sse",
    "F-duplicate-index.sse",
]


def decode(data: bytes | str | dict[str, Any]) -> pc.ChatStreamEvent:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return pc.decode_chunk(ServerSentEvent(data_bytes=data))


def golden_sse(path: Path) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(path.read_bytes()) + decoder.close()
    assert not decoder.truncated
    return events


def fold(events: list[pc.ChatStreamEvent]) -> pc.ChatAccumulator:
    acc = pc.ChatAccumulator()
    for event in events:
        acc.apply(event)
    return acc


def snapshot_of(path: Path) -> dict[str, Any]:
    return fold([pc.decode_chunk(e) for e in golden_sse(path)]).snapshot()


def chunk(*calls: dict[str, Any], content: str | None = None, finish: str | None = None) -> Any:
    delta: dict[str, Any] = {}
    if calls:
        delta["tool_calls"] = list(calls)
    if content is not None:
        delta["content"] = content
    return decode(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


# -- decode_chunk ---------------------------------------------------------------------------------


def test_chunk_fields() -> None:
    event = decode((DATA / "A-text.sse").read_bytes().split(b"\n\n")[1][6:])
    assert type(event) is pc.ChatCompletionChunk
    assert (event.id, event.object, event.created) == (
        "chatcmpl-C1aT7xQ0bench0000000000000001",
        "chat.completion.chunk",
        1756310400,
    )
    assert event.choices[0].delta.content == "Hi"
    assert event.obfuscation == "p9K3xT6w"


def test_done_error_and_empty() -> None:
    assert type(decode(b"[DONE]")) is pc.ChatDoneEvent
    error = decode(b'{"error":{"code":500,"message":"Context size has been exceeded."}}')
    assert type(error) is pc.ChatErrorEvent
    assert (error.error.code, error.error.message) == (500, "Context size has been exceeded.")
    text = decode(b'{"error":"upstream overloaded"}')
    assert type(text) is pc.ChatErrorEvent and text.error.message == "upstream overloaded"
    empty = decode(b"")
    assert type(empty) is pc.ChatUnknownEvent and empty.data == b""


def test_every_field_may_be_missing() -> None:
    event = decode(b'{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{"}}]}}]}')
    assert type(event) is pc.ChatCompletionChunk
    call = event.choices[0].delta.tool_calls
    assert call is not None and call[0].index is None and call[0].id is None
    azure_filter = decode(
        b'{"choices":[{"index":0,"finish_reason":null,"content_filter_results":{}}],'
        b'"created":0,"id":"","model":"","object":""}'
    )
    assert type(azure_filter) is pc.ChatCompletionChunk and azure_filter.object == ""


@pytest.mark.parametrize(
    "data",
    [b"[DONE]x", b"[1]", b"not json", b'{"choices":5}', b'{"choices":[{"index":"0"}]}', b"\xff"],
)
def test_bad_chunks_raise_event_decode_error(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_the_protocol_error(stream: bytes) -> None:
    decoder = SSEDecoder()
    acc = pc.ChatAccumulator()
    try:
        for source in decoder.feed(stream) + decoder.close():
            acc.apply(pc.decode_chunk(source))
    except RemoteProtocolError:
        return
    acc.snapshot()


# -- golden streams against the SDK ---------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_chunks_validate_as_sdk_chunks(path: Path) -> None:
    for source in golden_sse(path):
        event = pc.decode_chunk(source)
        if type(event) is not pc.ChatCompletionChunk:
            continue
        raw = json.loads(source.data_bytes)
        if any(
            "index" not in c for ch in raw["choices"] for c in ch["delta"].get("tool_calls", [])
        ):
            continue  # the Gemini deviation: the SDK type requires the index
        sdk = SDKChunk.model_validate(raw)
        assert (sdk.id, sdk.model, sdk.created) == (event.id, event.model, event.created)
        assert len(sdk.choices) == len(event.choices)
        for ours, theirs in zip(event.choices, sdk.choices, strict=True):
            assert ours.delta.content == theirs.delta.content
            assert ours.finish_reason == theirs.finish_reason


def sdk_final(path: Path) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for source in golden_sse(path):
        if source.data_bytes == b"[DONE]":
            break
        state.handle_chunk(SDKChunk.model_validate(json.loads(source.data_bytes)))
    return state.get_final_completion()


@pytest.mark.parametrize("name", SDK_AGREES)
def test_reducer_agrees_with_the_sdk_stream_state(name: str) -> None:
    ours = snapshot_of(DATA / name)
    theirs = sdk_final(DATA / name)
    completion = ours["completion"]
    assert (completion["id"], completion["model"], completion["created"]) == (
        theirs.id,
        theirs.model,
        theirs.created,
    )
    assert completion["usage"] == (
        theirs.usage.model_dump(exclude_unset=True) if theirs.usage else None
    )
    assert len(completion["choices"]) == len(theirs.choices)
    for choice, sdk_choice in zip(completion["choices"], theirs.choices, strict=True):
        assert choice["finish_reason"] == sdk_choice.finish_reason
        message, sdk_message = choice["message"], sdk_choice.message
        assert (message["role"], message["content"], message["refusal"]) == (
            sdk_message.role,
            sdk_message.content,
            sdk_message.refusal,
        )
        sdk_calls = [
            {
                "id": c.id,
                "type": c.type,
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in sdk_message.tool_calls or []
        ]
        assert message.get("tool_calls", []) == sdk_calls
        assert message.get("reasoning") == getattr(sdk_message, "reasoning", None)


def test_tool_deltas_without_index() -> None:
    """Gemini: no index; the id on a call's first fragment names it. The SDK cannot fold it."""
    calls = snapshot_of(DATA / "E-tool-calls-without-index.sse")["completion"]["choices"][0]
    assert calls["finish_reason"] == "tool_calls"
    assert [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in calls["message"]["tool_calls"]
    ] == [
        ("function-call-11111", "get_weather", '{"location":"Oslo"}'),
        ("function-call-22222", "get_weather", '{"location":"Bergen"}'),
    ]
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own failure, whatever its type
        for source in golden_sse(DATA / "E-tool-calls-without-index.sse"):
            if source.data_bytes != b"[DONE]":
                ChatCompletionStreamState().handle_chunk(
                    SDKChunk.construct(**json.loads(source.data_bytes))
                )
        sdk_final(DATA / "E-tool-calls-without-index.sse")


def test_duplicate_index_and_whole_calls() -> None:
    dup = snapshot_of(DATA / "F-duplicate-index.sse")["completion"]["choices"][0]["message"]
    assert [c["function"]["arguments"] for c in dup["tool_calls"]] == ['{"location": "Oslo"}']
    whole = snapshot_of(DATA / "G-whole-calls.sse")["completion"]["choices"][0]["message"]
    assert [c["id"] for c in whole["tool_calls"]] == ["call_ab12cd34", "call_ef56gh78"]
    assert whole["reasoning"] == "The user wants two cities."
    # Ollama repeats the role in every delta; the SDK concatenates it.
    assert whole["role"] == "assistant"
    assert sdk_final(DATA / "G-whole-calls.sse").choices[0].message.role != "assistant"


def test_ids_and_names_are_set_and_integers_never_added() -> None:
    """A server repeating id, type and name in every fragment: the SDK would concatenate them."""
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{"},
    }
    again = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "}"},
    }
    acc = fold([chunk(first), chunk(again), chunk(again, finish="tool_calls")])
    call = acc.snapshot()["completion"]["choices"][0]["message"]["tool_calls"]
    assert call == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}}"}}
    ]


def test_every_call_numbered_zero_with_distinct_ids() -> None:
    acc = fold(
        [
            chunk({"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{}"}}),
            chunk({"index": 0, "id": "call_b", "function": {"name": "g", "arguments": "[]"}}),
            chunk({"index": 0, "function": {"arguments": " "}}),
        ]
    )
    calls = acc.snapshot()["completion"]["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("call_a", "{}"),
        ("call_b", "[] "),
    ]
    assert [c["function"]["name"] for c in calls] == ["f", "g"]


def test_id_less_fragments_continue_the_last_call() -> None:
    acc = fold(
        [
            chunk({"function": {"name": "f", "arguments": '{"a"'}}),
            chunk({"function": {"arguments": ":1}"}}),
        ]
    )
    calls = acc.snapshot()["completion"]["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [(None, '{"a":1}')]


def test_usage_error_done_and_filter_chunks() -> None:
    usage = snapshot_of(DATA / "B-usage.sse")["completion"]["usage"]
    assert usage["total_tokens"] == 24
    error = snapshot_of(DATA / "H-error.sse")
    assert error["error"]["message"] == "Context size has been exceeded."
    assert error["completion"]["choices"][0]["message"]["content"] == "Hi"
    assert error["done"] is True
    events = [pc.decode_chunk(e) for e in golden_sse(DATA / "A-text.sse")]
    azure = decode(
        b'{"choices":[{"index":0,"finish_reason":null,"content_filter_results":{}}],'
        b'"created":0,"id":"","model":"","object":""}'
    )
    assert fold([*events[:3], azure, *events[3:]]).snapshot() == fold(events).snapshot()
    assert fold(events[:-1]).snapshot()["done"] is False


def test_logprobs_are_extended() -> None:
    def lp(token: str) -> dict[str, Any]:
        return {
            "content": [{"token": token, "logprob": -0.5, "bytes": None, "top_logprobs": []}],
            "refusal": None,
        }

    raw = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    acc = fold(
        [
            decode(
                {**raw, "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": lp("a")}]}
            ),
            decode(
                {**raw, "choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": lp("b")}]}
            ),
        ]
    )
    logprobs = acc.snapshot()["completion"]["choices"][0]["logprobs"]
    assert [t["token"] for t in logprobs["content"]] == ["a", "b"]


def sdk_message_of(payloads: list[bytes]) -> Any:
    """The message the SDK's stream helper builds from these chunk payloads."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for payload in payloads:
        state.handle_chunk(SDKChunk.model_validate(json.loads(payload)))
    return state.get_final_completion().choices[0].message


def message_of(payloads: list[bytes]) -> dict[str, Any]:
    message: dict[str, Any] = fold([decode(p) for p in payloads]).snapshot()["completion"]
    return message["choices"][0]["message"]


def deltas(*deltas: dict[str, Any]) -> list[bytes]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return [
        json.dumps({**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}).encode()
        for d in deltas
    ]


def test_annotations_and_audio_are_kept_as_the_sdk_keeps_them() -> None:
    citation = {
        "type": "url_citation",
        "url_citation": {"url": "https://x", "title": "x", "start_index": 0, "end_index": 3},
    }
    cited = deltas({"role": "assistant", "content": "See"}, {"annotations": [citation]}, {})
    assert message_of(cited)["annotations"] == [citation]
    assert message_of(cited)["annotations"] == sdk_message_of(cited).model_dump()["annotations"]
    spoken = deltas(
        {"role": "assistant", "audio": {"id": "audio_1", "transcript": "He", "data": "AAA"}},
        {"audio": {"transcript": "llo", "data": "BBB"}},
        {"audio": {"expires_at": 123}},
    )
    audio = {"id": "audio_1", "data": "AAABBB", "expires_at": 123, "transcript": "Hello"}
    assert message_of(spoken)["audio"] == audio
    assert sdk_message_of(spoken).model_dump()["audio"] == audio
    assert "audio" not in message_of(cited) and "annotations" not in message_of(spoken)


def test_audio_ids_are_set_and_annotations_extended() -> None:
    """A server repeating the id and expiry in every delta; citations in two deltas (the SDK
    concatenates the ids, adds the expiries and raises on the second list)."""
    message = message_of(
        deltas(
            {"audio": {"id": "a", "data": "AA", "expires_at": 5}, "annotations": [{"n": 1}]},
            {"audio": {"id": "a", "data": "BB", "expires_at": 5}, "annotations": [{"n": 2}]},
        )
    )
    assert message["audio"] == {"id": "a", "data": "AABB", "expires_at": 5, "transcript": None}
    assert message["annotations"] == [{"n": 1}, {"n": 2}]


def escaped(*contents: str) -> list[bytes]:
    """Content deltas as an ``ensure_ascii`` server writes them: a surrogate half as its escape."""
    return deltas(*({"content": c} for c in contents))


def test_a_surrogate_pair_split_across_deltas_is_joined() -> None:
    payloads = escaped("smile \ud83d", "\ude00 ok")
    assert b"\\ud83d" in payloads[0]
    assert message_of(payloads)["content"] == "smile \U0001f600 ok"
    # The SDK keeps both halves as they came; joined, they are the same character.
    sdk = sdk_message_of(payloads).content
    assert sdk == "smile \ud83d\ude00 ok"
    assert sdk.encode("utf-16-le", "surrogatepass").decode("utf-16-le") == "smile \U0001f600 ok"


def test_a_half_without_its_other_half_is_u_fffd_and_the_text_is_kept() -> None:
    acc = fold([decode(p) for p in escaped("smile \ud83d")])
    assert acc.snapshot()["completion"]["choices"][0]["message"]["content"] == "smile \ufffd"
    # Still waiting for its other half: the next delta completes the character.
    acc.apply(decode(escaped("\ude00 ok")[0]))
    assert acc.snapshot()["completion"]["choices"][0]["message"]["content"] == "smile \U0001f600 ok"
    lone = message_of(escaped("a\ude00", "b\ud83d", "c", "\ud83d"))
    assert lone["content"] == "a\ufffdb\ufffdc\ufffd"
    assert msgspec.json.decode(msgspec.json.encode(lone)) == lone


def test_a_lone_surrogate_in_any_field_is_decoded_and_encodable() -> None:
    payload = (
        b'{"id":"c\\udc00","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
        b'"id":"call_1","function":{"name":"f","arguments":"{\\"a\\": \\"\\ud83d"}}]}}]}'
    )
    event = decode(payload)
    assert type(event) is pc.ChatCompletionChunk and event.id == "c\udc00"
    completion = fold([event]).snapshot()["completion"]
    assert completion["id"] == "c\ufffd"
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == (
        '{"a": "\ufffd'
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"choices":[{"index":"0","delta":{"content":"\\ud83d"}}]}',
        b'{"choices":[{"delta":{"content":"\\ud83d"}}],"x":NaN}',
        b'{"choices":[{"delta":{"content":"\\ud83d"}}]',
    ],
)
def test_bad_chunks_with_a_lone_surrogate_still_raise(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(data)


@given(st.text(st.sampled_from("a\u00e9\ud83d\ude00\U0001f600"), max_size=8), st.data())
def test_cutting_text_into_deltas_never_changes_the_snapshot(
    text: str, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(text)))
    whole = message_of(escaped(text))["content"]
    assert message_of(escaped(text[:cut], text[cut:]))["content"] == whole
    assert whole == text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def test_snapshot_is_plain_and_independent() -> None:
    acc = fold([pc.decode_chunk(e) for e in golden_sse(DATA / "C-tool-call.sse")])
    first = acc.snapshot()
    first["completion"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "x"
    second = acc.snapshot()
    assert (
        second["completion"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        == '{"location":"Oslo"}'
    )
    assert json.loads(msgspec.json.encode(second)) == second


@given(st.data())
def test_chunking_never_changes_the_snapshot(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(GOLDEN))
    stream = path.read_bytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = SSEDecoder()
    acc = pc.ChatAccumulator()
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for source in decoder.feed(stream[start:end]):
            acc.apply(pc.decode_chunk(source))
    decoder.close()
    assert acc.snapshot() == snapshot_of(path)
