"""Output encoding of Python handlers for JSON-serialisable values orjson rejects by default."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from gateway.tools import PythonHandler, ToolCall
from gateway.tools.handlers import HandlerThreads, encode_output


@pytest.fixture
def threads() -> HandlerThreads:
    return HandlerThreads(max_stuck=1, name_prefix="test-tool")


def _call() -> ToolCall:
    return ToolCall(
        run_id="run_1",
        thread_id="thread_1",
        tool_call_id="call_1",
        name="stats",
        arguments={},
        arguments_raw="{}",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({200: "ok", 404: "missing"}, {"200": "ok", "404": "missing"}),
        ({"total": 2**70}, {"total": 2**70}),
        ([2**64, -(2**64)], [2**64, -(2**64)]),
        ({1: {2: [3]}}, {"1": {"2": [3]}}),
    ],
)
def test_encode_output_accepts_int_keys_and_big_ints(value: object, expected: Any) -> None:
    encoded = encode_output(value)
    assert json.loads(encoded) == expected


@pytest.mark.asyncio
async def test_sync_handler_returning_int_keyed_dict_is_submitted(
    threads: HandlerThreads,
) -> None:
    def stats() -> dict[int, int]:
        return {2024: 3, 2025: 2**65}

    output = await PythonHandler(stats, threads)(_call())

    assert json.loads(output) == {"2024": 3, "2025": 2**65}


def test_encode_output_still_rejects_unserialisable_values() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_output({"handle": object()})
    # Floats stay orjson's (NaN becomes null, as before).
    assert orjson.loads(encode_output({"x": float("nan")})) == {"x": None}


def test_encode_output_reports_a_cycle_as_not_serialisable() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_output(cycle)
