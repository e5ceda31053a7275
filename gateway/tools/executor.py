"""Running every tool call of one required action: concurrency, timeouts, failures, the deadline.

Theory of operation. ``ToolExecutor.run`` receives the action's calls (spec §4.1
``required_action.submit_tool_outputs.tool_calls``) and produces exactly one output per call, in
the calls' order, because the upstream wants all outputs in one request (spec §1.3). All calls
run at once in one ``TaskGroup``; slots shared by every action cap how many handlers run at the same
time across the gateway, handed to the actions with calls waiting in turn (``slots.py``). Per
call:

- arguments that are not a JSON object, a handler that raises (anything, ``SystemExit`` and
  ``KeyboardInterrupt`` included: they must not end the gateway; so is a ``CancelledError`` it
  raises itself or gets by cancelling its own task, while runcast's own cancellation
  propagates), one that exceeds ``timeout``, or an output over ``max_output_bytes`` become an
  ``{"error": "..."}`` output the model can react to; with ``on_error="cancel"`` the first such
  failure aborts the other calls and the action ends with a cancel reason instead;
- a call with no handler is answered with an error output (policy ``error``) or makes the whole
  action the client's business (policy ``all``: ``run`` returns None before running anything).

The whole action runs under the action's deadline (``expires_at`` minus a margin, spec §5: after
``expires_at`` the run is expired and a submission is refused). If the handlers are still running
when it passes, they are cancelled and the action ends with a cancel reason: submitting late is
useless and the run must not sit in ``requires_action``.

``runcast.tool_call.*`` events (``events.py``) go to ``emit`` as calls start and end: every call
started gets its closing event, also when it is cut short by the abort, the deadline or runcast
cancelling ``run`` (a client answered the action itself, the relay ended). An ``emit`` that
raises is logged and never fails a call. A handler's error text is redacted
(``gateway.logs.redact``, as log lines are) before it becomes an output or an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from gateway import logs, tracing
from gateway.errors import ToolError

from . import events
from .events import Emit, publish
from .handlers import Handler, ToolCall, error_output, parse_arguments
from .slots import FairSlots

__all__ = [
    "ActionResult",
    "CallResult",
    "ExecutorStatistics",
    "PendingCall",
    "ToolExecutor",
]

log = logging.getLogger("runcast.tools")

_STOPPED = "runcast stopped answering the action"
_CLOSE_SECONDS = 5.0
"""How long the closing events of calls cut by runcast's cancel may take to publish."""


class _Function(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


class PendingCall(Protocol):
    """The shape of ``parsers.assistants.RequiredToolCall`` this module relies on."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def function(self) -> _Function: ...


class CallResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one call: ``output`` is what gets submitted (an error output when not ok)."""

    tool_call_id: str
    name: str
    output: str
    ok: bool
    error: str | None = None
    duration_ms: float = 0.0


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """All calls answered (``cancel_reason`` None), or why the run must be cancelled instead."""

    results: tuple[CallResult, ...]
    cancel_reason: str | None = None


class ExecutorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Handler calls waiting for the concurrency limit, running, and finished since start."""

    calls_waiting: int
    calls_running: int
    calls_completed: int
    calls_failed: int


class _Abort(Exception):
    """A call failed while ``on_error="cancel"``: stop the sibling calls."""

    def __init__(self, result: CallResult) -> None:
        super().__init__(result.error)
        self.result = result


class ToolExecutor:
    """Runs actions' calls with a shared concurrency limit. One per gateway.

    ``resolve`` maps a tool name to its handler (None: no handler). ``clock`` gives Unix time,
    the unit of ``expires_at``. ``on_call`` is told each call's outcome (``completed``,
    ``failed``, ``timeout``, ``no_handler``, ``invalid_arguments``; ``cancelled``: started, then
    cut short) and seconds.
    """

    def __init__(
        self,
        resolve: Callable[[str], Handler | None],
        *,
        timeout: float,
        concurrency: int,
        max_output_bytes: int = 1 << 20,
        on_error: Literal["output", "cancel"] = "output",
        policy: Literal["all", "error"] = "all",
        clock: Callable[[], float] = time.time,
        on_call: Callable[[str, float], None] | None = None,
    ) -> None:
        self._resolve = resolve
        self._on_call = on_call
        self._timeout = timeout
        self._max_output_bytes = max_output_bytes
        self._slots = FairSlots(concurrency)
        self._on_error = on_error
        self._policy = policy
        self._clock = clock
        self._waiting = 0
        self._running = 0
        self._failures = logs.RepeatedLines()
        """Failed calls' log lines per run: the 1st, 10th, 100th..."""
        self._completed = 0
        self._failed = 0
        self._stragglers: set[asyncio.Task[str]] = set()

    def statistics(self) -> ExecutorStatistics:
        return ExecutorStatistics(
            calls_waiting=self._waiting,
            calls_running=self._running,
            calls_completed=self._completed,
            calls_failed=self._failed,
        )

    def resolve(self, call: PendingCall) -> Handler | None:
        if call.type != "function":
            return None
        return self._resolve(call.function.name)

    def handles(self, calls: Sequence[PendingCall]) -> bool:
        """Whether ``run`` would answer these calls (policy ``all``: each one has a handler)."""
        if not calls:
            return False
        if self._policy == "error":
            return True
        return all(self.resolve(call) is not None for call in calls)

    async def run(
        self,
        calls: Sequence[PendingCall],
        *,
        run_id: str,
        thread_id: str,
        deadline: float | None = None,
        emit: Emit | None = None,
        owner: Mapping[str, str] | None = None,
    ) -> ActionResult | None:
        """Answer every call, or return None when the policy leaves the action to the client.

        ``deadline`` is Unix time by which every output must be ready (None: no deadline).
        ``owner`` names the calls' owner in the events (default: ``run_id`` and ``thread_id``;
        ``{"response_id": ...}`` for a Responses stream, see ``events.py``).
        """
        if owner is None:
            owner = {"run_id": run_id, "thread_id": thread_id}
        if not self.handles(calls):
            return None
        handlers = [self.resolve(call) for call in calls]
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return ActionResult(
                    results=(),
                    cancel_reason=f"the action's deadline passed {-remaining:.1f}s before "
                    "its tool calls could start",
                )
            when: float | None = asyncio.get_running_loop().time() + remaining
        else:
            when = None

        results: list[CallResult | None] = [None] * len(calls)
        started: dict[int, float] = {}
        cancel_reason: str | None = None
        try:
            async with asyncio.timeout_at(when):
                try:
                    async with asyncio.TaskGroup() as group:
                        for index, (call, handler) in enumerate(zip(calls, handlers, strict=True)):
                            group.create_task(
                                self._answer(
                                    index,
                                    call,
                                    handler,
                                    (run_id, thread_id, owner),
                                    results,
                                    started,
                                    emit,
                                )
                            )
                except* _Abort as aborted:
                    failure = aborted.exceptions[0]
                    assert isinstance(failure, _Abort)
                    cancel_reason = (
                        f"tool {failure.result.name!r} ({failure.result.tool_call_id}) failed: "
                        f"{failure.result.error}"
                    )
        except TimeoutError:
            cancel_reason = "tool calls did not finish before the action's deadline"
        except asyncio.CancelledError:
            # runcast stopped answering (a client's submission superseded the action, the
            # relay ended): the calls it started are closed all the same, bounded.
            try:
                async with asyncio.timeout(_CLOSE_SECONDS):
                    await self._close_cut(calls, results, started, owner, emit, _STOPPED)
            except TimeoutError:
                log.warning("%s: closing events of cancelled tool calls timed out", run_id)
            raise

        if cancel_reason is not None:
            await self._close_cut(calls, results, started, owner, emit, cancel_reason)
            return ActionResult(
                results=tuple(r for r in results if r is not None), cancel_reason=cancel_reason
            )
        answered = tuple(r for r in results if r is not None)
        if len(answered) != len(calls):
            # Not an assert (``python -O`` strips those): submitting fewer outputs than calls
            # would be refused upstream (spec §1.3), or leave calls unanswered.
            await self._close_cut(calls, results, started, owner, emit, "no output")
            missing = [
                call.id for call, result in zip(calls, results, strict=True) if result is None
            ]
            raise RuntimeError(f"tool calls ended without an output: {', '.join(missing)}")
        return ActionResult(results=answered)

    async def _close_cut(
        self,
        calls: Sequence[PendingCall],
        results: list[CallResult | None],
        started: dict[int, float],
        owner: Mapping[str, str],
        emit: Emit | None,
        reason: str,
    ) -> None:
        """Calls started and cut short (the abort, the deadline, runcast's cancel) still get
        their closing event, and count as ``cancelled``."""
        for index, t0 in started.items():
            if results[index] is not None:
                continue
            call = calls[index]
            duration_ms = _since(t0)
            if self._on_call is not None:
                self._on_call("cancelled", duration_ms / 1000.0)
            await publish(
                emit,
                events.tool_call_failed(
                    **owner,
                    tool_call_id=call.id,
                    name=call.function.name,
                    duration_ms=duration_ms,
                    error=f"cancelled: {reason}",
                ),
            )

    async def _answer(
        self,
        index: int,
        call: PendingCall,
        handler: Handler | None,
        who: tuple[str, str, Mapping[str, str]],
        results: list[CallResult | None],
        started: dict[int, float],
        emit: Emit | None,
    ) -> None:
        name = call.function.name
        run_id, thread_id, owner = who
        ids = {**owner, "tool_call_id": call.id, "name": name}
        abortable = self._on_error == "cancel"
        if handler is None:
            # Only reachable with policy "error"; not a handler failure, so never a cancel.
            abortable = False
            error: str | None = f"no handler for tool {name!r}"
        else:
            try:
                arguments = parse_arguments(call.function.arguments)
            except ValueError as exc:
                error = str(exc)
            else:
                error = None
        if error is not None:
            if self._on_call is not None:
                self._on_call("no_handler" if handler is None else "invalid_arguments", 0.0)
            result = CallResult(
                tool_call_id=call.id, name=name, output=error_output(error), ok=False, error=error
            )
            results[index] = result
            await publish(emit, events.tool_call_failed(**ids, duration_ms=0.0, error=error))
            if abortable:
                raise _Abort(result)
            return

        assert handler is not None
        tool_call = ToolCall(
            run_id=run_id,
            thread_id=thread_id,
            tool_call_id=call.id,
            name=name,
            arguments=arguments,
            arguments_raw=call.function.arguments,
        )
        self._waiting += 1
        try:
            await self._slots.acquire(run_id)  # the action's turn among the others waiting
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            started[index] = time.perf_counter()
            await publish(emit, events.tool_call_started(**ids))
            # Timed from here: publishing the event is not the handler's time.
            t0 = time.perf_counter()
            output, error = await self._invoke(handler, tool_call)
            duration_ms = _since(t0)
        finally:
            self._running -= 1
            self._slots.release(run_id)
        if error is None:
            self._completed += 1
        else:
            self._failed += 1
        if self._on_call is not None:
            timed_out = error is not None and error.endswith(f"timed out after {self._timeout:g}s")
            outcome = "completed" if error is None else "timeout" if timed_out else "failed"
            self._on_call(outcome, duration_ms / 1000.0)
        if error is None:
            assert output is not None
            results[index] = CallResult(
                tool_call_id=call.id, name=name, output=output, ok=True, duration_ms=duration_ms
            )
            await publish(emit, events.tool_call_completed(**ids, duration_ms=duration_ms))
            return
        result = CallResult(
            tool_call_id=call.id,
            name=name,
            output=error_output(error),
            ok=False,
            error=error,
            duration_ms=duration_ms,
        )
        results[index] = result
        await publish(emit, events.tool_call_failed(**ids, duration_ms=duration_ms, error=error))
        if abortable:
            raise _Abort(result)

    def _let_go(self, task: asyncio.Task[str], stop: _Stop) -> None:
        """Cancel a handler's task that is past its time; held until it ends, its outcome
        dropped (the call was answered without it)."""
        stop.requested = True
        task.cancel()
        if not task.done():
            self._stragglers.add(task)
            task.add_done_callback(self._ended_late)

    def _ended_late(self, task: asyncio.Task[str]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure is no news

    async def _invoke(self, handler: Handler, call: ToolCall) -> tuple[str | None, str | None]:
        """(output, None) on success, (None, error message) on failure.

        The handler runs in a task of its own, so its timeout holds even when it swallows the
        cancellation (it is then let go: ``_stragglers``, until it ends)."""
        traced = tracing.span(
            "runcast.tool_call", **{"runcast.tool": call.name, "runcast.run_id": call.run_id}
        )
        try:
            with traced:
                stop = _Stop()
                task = asyncio.get_running_loop().create_task(
                    _guarded(handler, call, stop), name=f"runcast-tool {call.name}"
                )
                try:
                    done, _ = await asyncio.wait((task,), timeout=self._timeout)
                except asyncio.CancelledError:
                    self._let_go(task, stop)
                    raise
                if not done:
                    self._let_go(task, stop)
                    return None, f"tool {call.name!r} timed out after {self._timeout:g}s"
                output = task.result()
            limit = self._max_output_bytes
            # A str's length bounds its UTF-8 size from below, and 4x from above.
            if len(output) > limit or (len(output) * 4 > limit and len(output.encode()) > limit):
                return None, f"output over {limit} bytes"
            return output, None
        except ToolError as exc:
            # The event and the output name the tool already; keep only what went wrong. Either
            # error text leaves the process (output, events): redacted as the log line is.
            prefix = f"tool {exc.name!r} ({exc.tool_call_id}): "
            text = str(exc).removeprefix(prefix)
            if (n := self._failures.count(_kind(call, text))) is not None:
                log.warning("tool call of run %s failed%s: %s", call.run_id, _nth(n), exc)
            return None, logs.redact(text)
        except Exception as exc:
            raised = exc.raised if isinstance(exc, _Raised) else exc
            if (n := self._failures.count(_kind(call, type(raised).__name__))) is not None:
                log.warning(
                    "tool %r (%s) of run %s raised%s",
                    call.name,
                    call.tool_call_id,
                    call.run_id,
                    _nth(n),
                    exc_info=raised,
                )
            return None, logs.redact(_describe(raised))


def _kind(call: ToolCall, what: str) -> str:
    """The kind of a failure, whose log lines are counted together: one run, one tool, one error
    (its first 80 characters, or the exception's type): each distinct failure still gets its
    line."""
    return f"{call.run_id}\0{call.name}\0{what[:80]}"


def _nth(n: int) -> str:
    """What a throttled line adds: how many of its kind the run had."""
    return "" if n == 1 else f" (the {n}th such failure of this run's calls)"


class _Raised(Exception):
    """A handler raised a BaseException that is not an Exception (``raised``)."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(_describe(raised))
        self.raised = raised


class _Stop:
    """Whether runcast has cancelled a handler's task (``_let_go``), set before it does."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False


async def _guarded(handler: Handler, call: ToolCall, stop: _Stop) -> str:
    """``handler(call)``, its BaseExceptions made ordinary ones: asyncio re-raises a task's
    SystemExit or KeyboardInterrupt out of the event loop, ending the gateway (a handler calling
    ``sys.exit()``, argparse on bad arguments), and a CancelledError of the handler's own making
    would pass for the call being cancelled, leaving it unanswered. A CancelledError is
    runcast's only when ``stop`` says runcast cancelled the task: ``Task.cancelling()`` counts
    the handler's own ``asyncio.current_task().cancel()`` too."""
    try:
        return await handler(call)
    except Exception:
        raise
    except asyncio.CancelledError as exc:
        if stop.requested:
            raise  # runcast's: the call was let go (timeout, deadline, the action cancelled)
        raise _Raised(exc) from exc
    except BaseException as exc:
        raise _Raised(exc) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
