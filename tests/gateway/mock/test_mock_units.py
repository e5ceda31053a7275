"""Unit checks of the simulator's pure parts: settings, frames, text, schema-driven arguments."""

from __future__ import annotations

import functools
import json
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.mock import SCENARIOS, MockSettings
from gateway.mock.bodies import decimal
from gateway.mock.fakeargs import fake_arguments
from gateway.mock.frames import (
    DONE,
    MessageDeltaTemplate,
    ToolCallDeltaTemplate,
    error_frame,
    json_string,
)
from gateway.mock.ids import new_id
from gateway.mock.lifecycle import split_text
from gateway.mock.requests import FunctionDefinition
from gateway.mock.scenarios import answer_preamble, round_tools, scenario_for_run
from gateway.mock.textgen import TextGenerator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 12, "maxLength": 20},
        "unit": {"enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 3, "maximum": 5},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "below": {"type": "integer", "maximum": -10},
        "flag": {"type": "boolean"},
        "maybe": {"type": ["null", "integer"]},
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "fixed": {"const": 42},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "choice": {
            "anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": "number"}}}]
        },
        "nested": {
            "type": "object",
            "properties": {"deep": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "required": ["deep", "label"],
        },
    },
    "required": ["city", "days"],
}


def split_frame(data: bytes) -> tuple[str, Any]:
    assert data.endswith(b"\n\n") and data.count(b"\n") == 3  # no raw line break inside
    event_line, data_line, _, _ = data.split(b"\n")
    assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
    return event_line[7:].decode(), json.loads(data_line[6:])


def test_settings_are_validated() -> None:
    assert MockSettings().scenario == "text"
    for bad in (
        {"deltas": 0},
        {"scenario": "nope"},
        {"delay_ms": -1},
        {"max_threads": 0},
        {"model": ""},
        # NaN passed both comparisons and inf the >= 0 one: a NaN slow start streamed only
        # [DONE] (a ValueError in the pacing), inf pauses never ended.
        {"delay_ms": float("inf")},
        {"slow_start_ms": float("nan")},
        {"ttl_s": float("nan")},
        {"stream_window_s": float("inf")},
    ):
        with pytest.raises(ConfigError):
            MockSettings(**bad)


@given(st.text())
def test_message_delta_template_is_exact_json(text: str) -> None:
    template = MessageDeltaTemplate("msg_1")
    event, first = split_frame(template.prefix + json_string(text) + template.first_suffix)
    assert event == "thread.message.delta"
    assert first == {
        "id": "msg_1",
        "object": "thread.message.delta",
        "delta": {
            "content": [{"index": 0, "type": "text", "text": {"value": text, "annotations": []}}]
        },
    }
    _, later = split_frame(template.prefix + json_string(text) + template.suffix)
    assert later["delta"]["content"][0]["text"] == {"value": text}


@given(st.text(), st.integers(0, 30))
def test_tool_call_templates_are_exact_json(text: str, index: int) -> None:
    template = ToolCallDeltaTemplate("step_1", index, "call_1", "get_weather")
    _, head = split_frame(template.head)
    assert head["delta"]["step_details"]["tool_calls"] == [
        {
            "index": index,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "", "output": None},
        }
    ]
    event, piece = split_frame(template.fragment(text))
    assert event == "thread.run.step.delta"
    assert piece["delta"]["step_details"]["tool_calls"] == [
        {"index": index, "type": "function", "function": {"arguments": text}}
    ]


def test_error_and_done_frames() -> None:
    event, data = split_frame(error_frame("server_error", 'bad "x"', "server_error"))
    assert event == "error"
    assert data == {
        "code": "server_error",
        "message": 'bad "x"',
        "param": None,
        "type": "server_error",
    }
    assert DONE == b"event: done\ndata: [DONE]\n\n"


def test_text_is_seeded() -> None:
    first = TextGenerator(1).fragments(50, 3, first=True)
    assert first == TextGenerator(1).fragments(50, 3, first=True)
    assert first != TextGenerator(2).fragments(50, 3, first=True)
    assert first[0][0].isupper() and all(f.startswith(" ") for f in first[1:])
    assert all(len(f.split()) == 3 for f in first)


@given(st.integers(0, 2**32))
def test_fake_arguments_fit_the_schema(seed: int) -> None:
    args = fake_arguments(SCHEMA, random.Random(seed))
    assert msgspec.json.decode(msgspec.json.encode(args)) == args
    assert 12 <= len(args["city"]) <= 20
    assert args["unit"] in ("c", "f")
    assert 3 <= args["days"] <= 5 and isinstance(args["days"], int)
    assert 0 < args["ratio"] < 1
    assert args["below"] <= -10
    assert isinstance(args["flag"], bool)
    assert isinstance(args["maybe"], int)
    assert args["when"] == "2024-05-01T12:00:00Z"
    assert len(args["id"]) == 36
    assert args["fixed"] == 42
    assert 2 <= len(args["tags"]) <= 4 and all(isinstance(t, str) for t in args["tags"])
    assert isinstance(args["choice"]["x"], float)
    assert isinstance(args["nested"]["deep"]["n"], int) and "label" in args["nested"]
    assert fake_arguments(SCHEMA, random.Random(seed)) == args


def test_fake_arguments_without_schema() -> None:
    assert fake_arguments(None, random.Random(0)) == {}
    assert fake_arguments({}, random.Random(0)) == {}
    assert isinstance(fake_arguments({"type": "string"}, random.Random(0))["value"], str)


@given(st.text(), st.integers(1, 5))
def test_split_text_keeps_text(text: str, pieces: int) -> None:
    parts = split_text(text, pieces)
    assert "".join(parts) == text and 1 <= len(parts) <= pieces


def test_scenario_rules() -> None:
    a = FunctionDefinition(name="a")
    b = FunctionDefinition(name="b")
    assert scenario_for_run(SCENARIOS["tool_call"], []) is SCENARIOS["text"]
    assert scenario_for_run(SCENARIOS["error"], []) is SCENARIOS["error"]
    assert round_tools(SCENARIOS["parallel_tool_calls"], [a, b], 0) == [a, b]
    assert round_tools(SCENARIOS["multi_round"], [a, b], 0) == [a]
    assert round_tools(SCENARIOS["multi_round"], [a, b], 1) == [b]
    assert round_tools(SCENARIOS["multi_round"], [a], 1) == [a]
    assert answer_preamble([("a", "x\ny")]) == ["a returned: x\ny\n\n"]


def test_public_names_are_sorted_and_exist() -> None:
    import importlib
    import pkgutil

    import gateway.mock

    for info in pkgutil.iter_modules(gateway.mock.__path__):
        module = importlib.import_module(f"gateway.mock.{info.name}")
        names = list(module.__all__)
        # isort-style order (ruff RUF022): CONSTANTS, then Classes, then functions.
        assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
        assert all(hasattr(module, name) for name in names), info.name
    assert gateway.mock.__all__ == ["SCENARIOS", "MockSettings", "Scenario", "create_app"]


def test_ids_have_openai_shape_and_use_the_whole_alphabet() -> None:
    ids = [new_id("run") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("run_") and len(i) == 28 and i[4:].isalnum() for i in ids)
    assert all(i[4:].isascii() for i in ids)
    seen = set("".join(i[4:] for i in ids))
    assert len(seen) == 62  # 48,000 draws: every letter and digit comes up


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": 10**12, "items": {"type": "string", "minLength": 10**12}},
        {"type": "string", "minLength": 1e300},
        # 16 items on each of 8 levels would be 16**8 values.
        functools.reduce(
            lambda inner, _: {"type": "array", "minItems": 16, "items": inner},
            range(10),
            {"type": "integer"},
        ),
        {"type": "array", "minItems": "abc", "maxItems": None, "items": {"minLength": [1]}},
        {"type": "number", "minimum": 10**400, "maximum": float("inf")},
        {"type": "integer", "minimum": float("nan")},
    ],
)
def test_fake_arguments_are_bounded_whatever_the_schema_asks(schema: dict[str, Any]) -> None:
    # 2,000 values and words at most: a few dozen KB.
    assert len(msgspec.json.encode(fake_arguments(schema, random.Random(0)))) < 100_000


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)
_KEYS = st.sampled_from(
    ["type", "items", "properties", "required", "minItems", "maxItems", "minLength", "maxLength",
     "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "anyOf",
     "format"]
)  # fmt: skip
_SCHEMA = st.recursive(
    st.dictionaries(_KEYS, _JSON, max_size=4),
    lambda inner: st.dictionaries(_KEYS, inner | _JSON | st.lists(inner, max_size=3), max_size=5),
    max_leaves=12,
)


@given(_SCHEMA, st.integers(0, 2**32))
def test_fake_arguments_never_fail_on_a_schema_from_a_request(schema: Any, seed: int) -> None:
    args = fake_arguments(schema, random.Random(seed))
    assert isinstance(args, dict)
    msgspec.json.encode(args)


@given(st.integers(min_value=-(10**17) + 1, max_value=10**17))
def test_decimal_reads_what_str_writes(n: int) -> None:
    assert decimal(str(n)) == n


@pytest.mark.parametrize(
    "raw", ["", "-", "--1", "+5", "1_0", " 5", "5 ", "\uff15", "0x10", "9" * 19]
)
def test_decimal_refuses_what_int_would_also_take(raw: str) -> None:
    assert decimal(raw) is None
