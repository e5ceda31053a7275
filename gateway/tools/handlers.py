"""What one tool call is, how a handler answers it, and the Python-function handler.

A handler is any object with ``async def __call__(call: ToolCall) -> str`` returning the output
string to submit (spec §1.3: ``output`` is a string). It raises on failure; turning failures into
``{"error": ...}`` outputs, timeouts and concurrency limits belong to ``executor.py``.

:class:`PythonHandler` passes the call's parsed JSON arguments as keyword arguments. Coroutine
functions are awaited on the loop; plain functions run in a bounded thread pool, never on the
loop. A sync function cannot be interrupted: on timeout its thread runs on until it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import msgspec
import orjson

from gateway.errors import ToolError

__all__ = [
    "Handler",
    "PythonHandler",
    "ToolCall",
    "encode_output",
    "error_output",
    "parse_arguments",
]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``required_action.submit_tool_outputs.tool_calls`` with its run (spec §4.1).

    ``arguments`` is ``arguments_raw`` parsed (always a JSON object here: calls whose arguments
    do not parse never reach a handler).
    """

    run_id: str
    thread_id: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    arguments_raw: str


class Handler(Protocol):
    async def __call__(self, call: ToolCall, /) -> str: ...


def parse_arguments(raw: str) -> dict[str, Any]:
    """Parse a call's ``function.arguments`` (model-written JSON text that may be invalid, §4.1).

    Blank text counts as no arguments (``{}``): some models send ``""`` for parameterless
    functions. Anything else must be a JSON object, since its keys become keyword arguments.
    """
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


def encode_output(value: object) -> str:
    """A handler's return value as an output string: ``str`` as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        # Non-str keys ({200: "ok"}) become strings, as with the stdlib json module.
        return orjson.dumps(value, default=_to_builtins, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        try:
            # orjson stops at 64-bit integers; msgspec encodes Python ints of any size.
            return msgspec.json.encode(value).decode()
        except (TypeError, RecursionError):
            raise TypeError(f"return value is not JSON-serialisable: {exc}") from exc


def error_output(message: str) -> str:
    """The ``{"error": "..."}`` output that lets the model see a call failed and recover."""
    return orjson.dumps({"error": message}).decode()


def _to_builtins(value: object) -> Any:
    # msgspec Structs, dataclasses, enums, sets... (to_builtins raises TypeError otherwise).
    return msgspec.to_builtins(value)


class PythonHandler:
    """Calls a Python function with the call's arguments as keyword arguments."""

    __slots__ = ("_is_async", "_pool", "fn")

    def __init__(self, fn: Callable[..., Any], pool: Executor) -> None:
        self.fn = fn
        self._pool = pool
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__
        )

    async def __call__(self, call: ToolCall, /) -> str:
        if self._is_async:
            result = await self.fn(**call.arguments)
        else:
            loop = asyncio.get_running_loop()
            # copy_context keeps contextvars (e.g. log correlation) visible inside the thread.
            context = contextvars.copy_context()
            job = functools.partial(context.run, self.fn, **call.arguments)
            result = await loop.run_in_executor(self._pool, job)
            if inspect.isawaitable(result):
                # A sync wrapper (partial, lambda) around a coroutine function.
                result = await result
        try:
            return encode_output(result)
        except TypeError as exc:
            raise ToolError(call.name, call.tool_call_id, str(exc)) from exc
