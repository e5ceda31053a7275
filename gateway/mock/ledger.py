"""The bookkeeping side of a run: its open step and message, its usage, its terminal transitions.

Every transition here changes the stored objects first and then queues the matching event on the
run's emitter (spec §3), so what a later GET returns and what the stream said always agree. A
terminal transition also frees the thread for its next run (spec §5) before that event is sent.
"""

from __future__ import annotations

from gateway.mock import lifecycle as lc
from gateway.mock.emitter import Emitter
from gateway.mock.objects import (
    IncompleteDetails,
    LastError,
    Message,
    MessageCreationDetails,
    RunStep,
    ToolCallsDetails,
    Usage,
)
from gateway.mock.store import RunRecord, ThreadRecord

__all__ = ["RunLedger"]


class RunLedger:
    """Steps, the answer message and usage of one run, with the events their changes emit."""

    __slots__ = ("_words", "emitter", "message", "parts", "prompt_tokens", "record", "run", "step",
                 "thread", "usage")  # fmt: skip

    def __init__(
        self, record: RunRecord, thread: ThreadRecord, emitter: Emitter, *, words: int
    ) -> None:
        self.record = record
        self.run = record.run
        self.thread = thread
        self.emitter = emitter
        self.usage = lc.ZERO_USAGE
        self.prompt_tokens = lc.prompt_tokens(self.run, thread)
        self.step: RunStep | None = None
        self.message: Message | None = None
        self.parts: list[str] = []  # the answer's text fragments, shared with its TextStream
        self._words = words

    def open_step(self, details: MessageCreationDetails | ToolCallsDetails) -> RunStep:
        step = lc.new_step(self.run, details)
        self.record.steps[step.id] = step
        self.step = step
        self.emitter.event(b"thread.run.step.created", step)
        self.emitter.event(b"thread.run.step.in_progress", step)
        return step

    def close_step(
        self, status: str, *, usage: Usage | None = None, last_error: LastError | None = None
    ) -> None:
        step = self.step
        assert step is not None
        lc.close_step(step, status, usage=usage, last_error=last_error)
        if usage is not None:
            self.usage = self.usage + usage
        self.emitter.event(b"thread.run.step." + status.encode(), step)

    def open_message(self) -> Message:
        message = lc.new_message(self.run)
        self.open_step(lc.message_creation(message.id))
        self.message = message
        self.thread.add_message(message)
        self.emitter.event(b"thread.message.created", message)
        self.emitter.event(b"thread.message.in_progress", message)
        return message

    def finish_message(self, status: str, details: IncompleteDetails | None = None) -> Usage:
        message = self.message
        assert message is not None
        lc.finish_message(message, status, "".join(self.parts), details)
        self.emitter.event(b"thread.message." + status.encode(), message)
        return lc.message_usage(self.prompt_tokens, self.parts, self._words)

    def terminal(
        self,
        status: str,
        *,
        last_error: LastError | None = None,
        incomplete_details: IncompleteDetails | None = None,
    ) -> None:
        lc.terminal(
            self.run,
            status,
            self.usage,
            last_error=last_error,
            incomplete_details=incomplete_details,
        )
        if self.thread.active_run_id == self.run.id:
            self.thread.active_run_id = None
        self.emitter.event(b"thread.run." + status.encode(), self.run)

    # -- endings (spec §5) -----------------------------------------------------------------------

    def complete(self) -> None:
        self.close_step("completed", usage=self.finish_message("completed"))
        self.terminal("completed")

    def incomplete(self) -> None:
        usage = self.finish_message("incomplete", IncompleteDetails(reason="max_tokens"))
        self.close_step("completed", usage=usage)
        self.terminal(
            "incomplete", incomplete_details=IncompleteDetails(reason="max_completion_tokens")
        )

    def fail(self, error: LastError) -> None:
        usage = self.finish_message("incomplete", IncompleteDetails(reason="run_failed"))
        self.close_step("failed", usage=usage, last_error=error)
        self.terminal("failed", last_error=error)

    def cancelled(self) -> None:
        self.emitter.event(b"thread.run.cancelling", self.run)
        if self.message is not None and self.message.status == "in_progress":
            self.finish_message("incomplete", IncompleteDetails(reason="run_cancelled"))
        if self.step is not None and self.step.status == "in_progress":
            self.close_step("cancelled")
        self.terminal("cancelled")

    def expired(self) -> None:
        if self.step is not None and self.step.status == "in_progress":
            self.close_step("expired")
        self.terminal("expired")
