"""Python handlers, argument parsing and output encoding (gateway/tools/handlers.py)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import msgspec
import orjson
import pytest

from gateway.errors import ToolError
from gateway.tools import PythonHandler, ToolCall
from gateway.tools.handlers import HandlerThreads, encode_output, error_output, parse_arguments

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="-")


def make_call(arguments: dict[str, Any], name: str = "fn") -> ToolCall:
    return ToolCall(
        run_id="run_1",
        thread_id="thread_1",
        tool_call_id="call_1",
        name=name,
        arguments=arguments,
        arguments_raw=orjson.dumps(arguments).decode(),
    )


@pytest.fixture
def threads() -> HandlerThreads:
    return HandlerThreads(max_stuck=1, name_prefix="test-tool")


@pytest.mark.asyncio
async def test_sync_handler_runs_in_a_thread_not_on_the_loop(threads: HandlerThreads) -> None:
    seen: dict[str, Any] = {}

    def add(a: int, b: int) -> int:
        seen["thread"] = threading.get_ident()
        seen["name"] = threading.current_thread().name
        seen["request"] = REQUEST_ID.get()
        return a + b

    REQUEST_ID.set("req-7")
    output = await PythonHandler(add, threads)(make_call({"a": 2, "b": 3}))
    assert output == "5"
    assert seen["thread"] != threading.get_ident()
    assert seen["name"].startswith("test-tool")
    assert seen["request"] == "req-7"  # context variables follow the call into the thread


@pytest.mark.asyncio
async def test_async_handler_is_awaited_on_the_loop(threads: HandlerThreads) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    async def greet(name: str) -> str:
        seen.append(threading.get_ident())
        await asyncio.sleep(0)
        return f"hello {name}"

    class AsyncCallable:
        async def __call__(self, name: str) -> dict[str, str]:
            seen.append(threading.get_ident())
            return {"hi": name}

    assert await PythonHandler(greet, threads)(make_call({"name": "Ada"})) == "hello Ada"
    assert await PythonHandler(AsyncCallable(), threads)(make_call({"name": "Bo"})) == '{"hi":"Bo"}'
    assert seen == [loop_thread, loop_thread]


class Weather(msgspec.Struct):
    city: str
    temp_c: float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("already text", "already text"),
        ('{"raw": 1}', '{"raw": 1}'),
        ({"temp_c": 4, "city": "Oslo"}, '{"temp_c":4,"city":"Oslo"}'),
        ([1, "two", None], '[1,"two",null]'),
        (None, "null"),
        (42, "42"),
        (True, "true"),
        (Weather(city="Oslo", temp_c=4.5), '{"city":"Oslo","temp_c":4.5}'),
    ],
)
def test_encode_output(value: object, expected: str) -> None:
    assert encode_output(value) == expected


@pytest.mark.asyncio
async def test_unserialisable_return_value_is_a_tool_error(threads: HandlerThreads) -> None:
    def bad() -> object:
        return object()

    with pytest.raises(ToolError, match="not JSON-serialisable"):
        await PythonHandler(bad, threads)(make_call({}, name="bad"))


@pytest.mark.asyncio
async def test_an_int_past_the_digit_limit_is_a_tool_error(threads: HandlerThreads) -> None:
    # Python's int-to-str limit (sys.get_int_max_str_digits(), 4300 digits by default) bounds
    # the ints msgspec can encode past orjson's 64 bits.
    def huge() -> int:
        return 10**5000

    with pytest.raises(
        ToolError, match=r"not JSON-serialisable: Exceeds the limit \(4300 digits\)"
    ):
        await PythonHandler(huge, threads)(make_call({}, name="huge"))


def test_error_output_is_json() -> None:
    assert orjson.loads(error_output('quote " and \n newline')) == {
        "error": 'quote " and \n newline'
    }


def test_parse_arguments() -> None:
    assert parse_arguments('{"city": "Oslo"}') == {"city": "Oslo"}
    assert parse_arguments("") == {}
    assert parse_arguments("  \n") == {}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_arguments('{"city": "Osl')
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_arguments("[1, 2]")
