"""What one tool call is, how a handler answers it, and the Python-function handler.

A handler is any object with ``async def __call__(call: ToolCall) -> str`` returning the output
string to submit (spec §1.3: ``output`` is a string). It raises on failure; turning failures into
``{"error": ...}`` outputs, timeouts and concurrency limits belong to ``executor.py``.

:class:`PythonHandler` passes the call's parsed JSON arguments as keyword arguments. Coroutine
functions are awaited on the loop; plain functions run in a thread, never on the loop
(:class:`HandlerThreads`).

Sync handlers and stuck threads. A thread cannot be interrupted: a sync handler past its timeout
runs on until it returns, and one that never returns keeps its thread for good. With a fixed pool,
a few of those held every worker and each later sync call waited for one until it "timed out"
without having run. So each sync call gets a thread of its own (how many run at once is bounded
by the executor's concurrency slots), and :class:`HandlerThreads` counts the threads still running
after their call was let go (timed out or cancelled). Past ``max_stuck`` of them, sync calls are
refused at once with an error naming that count, rather than starting threads without bound;
async handlers are unaffected, and each stuck thread that returns frees its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec
import orjson

from gateway.errors import ToolError

__all__ = [
    "Handler",
    "HandlerThreads",
    "NoThread",
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
            # orjson stops at 64-bit integers; msgspec encodes larger ones up to Python's
            # int-to-str limit (sys.get_int_max_str_digits(), 4300 digits by default).
            return msgspec.json.encode(value).decode()
        except ValueError as beyond:  # that limit: its text says so, orjson's would mislead
            raise TypeError(f"return value is not JSON-serialisable: {beyond}") from beyond
        except (TypeError, RecursionError):
            raise TypeError(f"return value is not JSON-serialisable: {exc}") from exc


def error_output(message: str) -> str:
    """The ``{"error": "..."}`` output that lets the model see a call failed and recover."""
    return orjson.dumps({"error": message}).decode()


def _to_builtins(value: object) -> Any:
    # msgspec Structs, dataclasses, enums, sets... (to_builtins raises TypeError otherwise).
    return msgspec.to_builtins(value)


T = TypeVar("T")


class NoThread(Exception):
    """A sync call refused: ``stuck`` threads already run on after their call was let go."""

    def __init__(self, stuck: int, limit: int) -> None:
        super().__init__(
            f"not run: {stuck} sync tool handlers are stuck (still running after their call "
            f"timed out or was cancelled; tools.threads allows {limit})"
        )
        self.stuck = stuck


class _Job:
    """One sync call's thread as the loop sees it (touched on the loop's thread only)."""

    __slots__ = ("ended", "let_go")

    def __init__(self) -> None:
        self.ended = False
        self.let_go = False


class HandlerThreads:
    """Runs each sync call in a thread of its own; refuses calls while ``max_stuck`` threads
    run on after their call was let go (see the module docstring). One per gateway."""

    __slots__ = ("_count", "_max_stuck", "_prefix", "_stuck")

    def __init__(self, max_stuck: int, *, name_prefix: str = "runcast-tool") -> None:
        if max_stuck < 1:
            raise ValueError("max_stuck must be positive")
        self._max_stuck = max_stuck
        self._prefix = name_prefix
        self._count = itertools.count(1)
        self._stuck = 0

    @property
    def stuck(self) -> int:
        """Threads still running after their call was let go."""
        return self._stuck

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a new thread; :class:`NoThread` at once when too many are stuck."""
        if self._stuck >= self._max_stuck:
            raise NoThread(self._stuck, self._max_stuck)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        job = _Job()

        def work() -> None:
            settle: Callable[[], None]
            try:
                settle = functools.partial(done.set_result, fn())
            except StopIteration:  # a Future refuses it (as a coroutine turns it into this)
                settle = functools.partial(
                    done.set_exception, RuntimeError("handler raised StopIteration")
                )
            except BaseException as exc:  # handed to the loop, where the executor judges it
                settle = functools.partial(done.set_exception, exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._ended, job, done, settle)

        # Not a daemon: at exit `runcast serve` gives such threads a moment, then leaves them.
        threading.Thread(target=work, name=f"{self._prefix}-{next(self._count)}").start()
        try:
            return await done
        except asyncio.CancelledError:
            if not job.ended:
                job.let_go = True
                self._stuck += 1
            raise

    def _ended(self, job: _Job, done: asyncio.Future[Any], settle: Callable[[], None]) -> None:
        job.ended = True
        if job.let_go:
            self._stuck -= 1
        elif not done.done():
            settle()


class PythonHandler:
    """Calls a Python function with the call's arguments as keyword arguments."""

    __slots__ = ("_is_async", "_threads", "fn")

    def __init__(self, fn: Callable[..., Any], threads: HandlerThreads) -> None:
        self.fn = fn
        self._threads = threads
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__
        )

    async def __call__(self, call: ToolCall, /) -> str:
        if self._is_async:
            result = await self.fn(**call.arguments)
        else:
            # copy_context keeps contextvars (e.g. log correlation) visible inside the thread.
            context = contextvars.copy_context()
            job = functools.partial(context.run, self.fn, **call.arguments)
            try:
                result = await self._threads.run(job)
            except NoThread as exc:
                raise ToolError(call.name, call.tool_call_id, str(exc)) from exc
            if inspect.isawaitable(result):
                # A sync wrapper (partial, lambda) around a coroutine function.
                result = await result
        try:
            return encode_output(result)
        except TypeError as exc:
            raise ToolError(call.name, call.tool_call_id, str(exc)) from exc
