"""One run's state machine (spec §5), executed server-side, emitting its events (spec §2).

Theory of operation. A :class:`RunDriver` is created per run and runs as one task owned by the
:class:`~gateway.mock.engine.Engine`, from ``queued`` to a terminal status, whether or not anyone
listens: an HTTP stream is an optional sink attached to its :class:`~gateway.mock.emitter.Emitter`
(by create-run, then by each streamed submit). The script is::

    [thread.created] run.created run.queued (slow start) run.in_progress
    per tool round:  step.created step.in_progress step.delta... run.requires_action done
                     -- wait for outputs / cancel / expiry --
                     step.completed run.queued run.in_progress            (spec §2.3)
    answer:          step.created step.in_progress message.created message.in_progress
                     message.delta... then the scenario's ending (completed, incomplete,
                     failed, mid-stream error, dropped connection)

The ``drop_*`` tool scenarios cut the first stream inside its tool round (mid-arguments, or right
after ``requires_action``); the run itself goes on as if nothing happened.

Routes talk to the driver synchronously (:meth:`submit`, :meth:`cancel`): the state change
happens at once, in the route, so a poller sees ``queued``/``cancelling`` immediately, and the
driver picks it up at its next check point (each delta batch, each pause). Every terminal
transition also frees the thread for its next run before the terminal event is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from gateway.mock import lifecycle as lc
from gateway.mock.emitter import Emitter
from gateway.mock.fakeargs import fake_arguments
from gateway.mock.frames import ToolCallDeltaTemplate, error_frame
from gateway.mock.ledger import RunLedger
from gateway.mock.objects import (
    FunctionCall,
    FunctionToolCall,
    LastError,
    ToolCallsDetails,
)
from gateway.mock.requests import FunctionDefinition, ToolOutput
from gateway.mock.scenarios import Scenario, answer_preamble, round_tools
from gateway.mock.settings import MockSettings
from gateway.mock.sink import StreamSink
from gateway.mock.store import RunRecord, ThreadRecord
from gateway.mock.textgen import TextGenerator
from gateway.mock.textstream import TextStream

__all__ = ["RunDriver"]

_ARG_FRAGMENTS = 3  # arguments arrive in a few step deltas, as in spec §2.3
_ERROR = LastError(
    code="server_error", message="The server had an error while processing your request."
)
_FAILED = LastError(code="rate_limit_exceeded", message="You exceeded your current quota.")


class _Stop(Exception):
    """The script leaves its normal path (internal control flow, never escapes the driver)."""


class _Cancelled(_Stop):
    pass


class _Expired(_Stop):
    pass


class RunDriver:
    """Drives one run; see the module docstring."""

    def __init__(
        self,
        *,
        settings: MockSettings,
        record: RunRecord,
        thread: ThreadRecord,
        scenario: Scenario,
        tools: list[FunctionDefinition],
        announce_thread: bool,
        deadline: float,
    ) -> None:
        self.settings = settings
        self.record = record
        self.run = record.run
        self.thread = thread
        self.scenario = scenario
        self.tools = tools
        self.deadline = deadline
        self.emitter = Emitter(settings.batch_bytes)
        self.task: asyncio.Task[None] | None = None
        self.pending: dict[str, str] = {}  # tool_call_id -> function name, while requires_action
        self._announce_thread = announce_thread
        self._delay = settings.delay_ms / 1000
        self._text = TextGenerator(settings.seed)
        self._wake = asyncio.Event()
        self._cancel = False
        self._outputs: list[ToolOutput] | None = None
        self._quoted: list[tuple[str, str]] = []
        self._ledger = RunLedger(record, thread, self.emitter, words=settings.tokens_per_delta)

    # -- called by the routes, synchronously -------------------------------------------------

    def attach(self, sink: StreamSink) -> None:
        self.emitter.attach(sink)

    def submit(self, outputs: list[ToolOutput], sink: StreamSink | None) -> None:
        """Accept the outputs of the pending calls (validated by the caller); spec §5."""
        self.run.status = "queued"
        self.run.required_action = None
        self.run.usage = None  # null again until terminal, as in spec §2.3's continuation
        self._outputs = outputs
        if sink is not None:
            self.attach(sink)
        self._wake.set()

    def cancel(self) -> None:
        self.run.status = "cancelling"
        self._cancel = True
        self._wake.set()

    # -- the task ------------------------------------------------------------------------------

    async def main(self) -> None:
        try:
            try:
                await self._script()
            except _Cancelled:
                self._ledger.cancelled()
                await self.emitter.finish()
            except _Expired:
                self.pending = {}
                self._ledger.expired()
        finally:
            self.emitter.close()
            if self.run.status not in lc.TERMINAL:
                # Only reached when the task itself is cancelled (shutdown, eviction).
                self._ledger.terminal("failed", last_error=_ERROR)
            self.record.driver = None

    async def _script(self) -> None:
        em, run = self.emitter, self.run
        if self._announce_thread:
            em.event(b"thread.created", self.thread.thread)
        em.event(b"thread.run.created", run)
        em.event(b"thread.run.queued", run)
        if self.scenario.slow_start:
            await self._pause(self.settings.slow_start_ms / 1000)
        self._check()
        lc.start(run)
        em.event(b"thread.run.in_progress", run)
        for round_no in range(self.scenario.tool_rounds):
            await self._tool_round(round_no)
        await self._answer()

    # -- tool rounds (spec §2.3) -----------------------------------------------------------------

    async def _tool_round(self, round_no: int) -> None:
        em, run, ledger = self.emitter, self.run, self._ledger
        # The drop scenarios cut the first stream only: the continuation streams normally.
        drop_at = self.scenario.drop_at if round_no == 0 else None
        step = ledger.open_step(ToolCallsDetails())
        calls: list[FunctionToolCall] = []
        for index, function in enumerate(round_tools(self.scenario, self.tools, round_no)):
            arguments = msgspec.json.encode(fake_arguments(function.parameters, self._text.rng))
            call = FunctionToolCall(
                id=lc.new_id("call"),
                function=FunctionCall(name=function.name, arguments=arguments.decode()),
            )
            calls.append(call)
            if em.active:
                template = ToolCallDeltaTemplate(step.id, index, call.id, function.name)
                em.raw(template.head)
                for piece in lc.split_text(call.function.arguments, _ARG_FRAGMENTS):
                    em.raw(template.fragment(piece))
                    if drop_at == "tool_arguments":
                        await em.drop()  # the arguments stop mid-way; later frames go nowhere
            await em.pace(self._delay)
            self._check()
        assert isinstance(step.step_details, ToolCallsDetails)
        step.step_details.tool_calls = calls
        step_usage = lc.tool_step_usage(ledger.prompt_tokens, calls)
        self.pending = {call.id: call.function.name for call in calls}
        lc.require_action(run, calls, ledger.usage + step_usage)
        em.event(b"thread.run.requires_action", run)
        if drop_at == "requires_action":
            await em.drop()
        else:
            await em.finish()
        outputs = await self._wait_outputs()
        by_id = {out.tool_call_id: out.output for out in outputs}
        for call in calls:
            call.function.output = by_id[call.id]
            self._quoted.append((call.function.name, by_id[call.id]))
        self.pending = {}
        ledger.close_step("completed", usage=step_usage)  # opens the continuation (spec §2.3)
        em.event(b"thread.run.queued", run)
        self._check()
        lc.start(run)
        em.event(b"thread.run.in_progress", run)

    async def _wait_outputs(self) -> list[ToolOutput]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self.deadline):
                while self._outputs is None and not self._cancel:
                    await self._wake.wait()
                    self._wake.clear()
        self._check()
        outputs = self._outputs
        if outputs is None:
            raise _Expired
        self._outputs = None
        return outputs

    # -- the answer ------------------------------------------------------------------------------

    async def _answer(self) -> None:
        em, settings, ending, ledger = (
            self.emitter,
            self.settings,
            self.scenario.ending,
            self._ledger,
        )
        message = ledger.open_message()
        text = TextStream(
            emitter=em,
            text=self._text,
            message_id=message.id,
            words=settings.tokens_per_delta,
            delay=self._delay,
            check=self._check,
            parts=ledger.parts,
            chunk=settings.yield_every,
        )
        for quoted in answer_preamble(self._quoted):
            await text.quote(quoted)
        half = settings.deltas // 2
        await text.generate(settings.deltas if ending in ("completed", "incomplete") else half)
        if ending == "completed":
            ledger.complete()
        elif ending == "incomplete":
            ledger.incomplete()
        elif ending == "failed":
            ledger.fail(_FAILED)
        elif ending == "error":  # spec §2.4: bare Error object, no `done` after it
            em.raw(error_frame(_ERROR.code, _ERROR.message, "server_error"))
            await em.finish(done=False)
            ledger.fail(_ERROR)
        else:  # drop: the connection goes, the run goes on (spec §5, runs are server-side)
            await em.drop()
            await text.generate(settings.deltas - half)
            ledger.complete()
        await em.finish()

    # -- pacing and check points -----------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._cancel:
                    await self._wake.wait()
                    self._wake.clear()

    def _check(self) -> None:
        if self._cancel:
            raise _Cancelled
