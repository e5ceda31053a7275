"""State transitions of Run, RunStep and Message objects (spec §4, §5), and their usage figures.

Pure functions on the mutable wire objects: which timestamp a status sets, that ``expires_at``
becomes null and ``required_action`` goes once a run is terminal, that usage is filled on finished
steps and terminal runs (spec §2.2 observations). Token counts are estimates (about four characters
per prompt token, one per generated word) - plausible, consistent, and summed like the spec's
example (run usage = sum of its steps).
"""

from __future__ import annotations

import time

from gateway.mock.ids import new_id
from gateway.mock.objects import (
    FunctionToolCall,
    IncompleteDetails,
    LastError,
    Message,
    MessageCreation,
    MessageCreationDetails,
    RequiredAction,
    RequiredFunction,
    RequiredToolCall,
    Run,
    RunStep,
    SubmitToolOutputs,
    Text,
    TextContent,
    ToolCallsDetails,
    Usage,
)
from gateway.mock.store import ThreadRecord

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "ZERO_USAGE",
    "close_step",
    "finish_message",
    "message_creation",
    "message_usage",
    "new_id",
    "new_message",
    "new_step",
    "now",
    "prompt_tokens",
    "require_action",
    "split_text",
    "start",
    "terminal",
    "tool_step_usage",
]

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})
# spec §5: a run in requires_action still counts as active.
ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
ZERO_USAGE = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
_PROMPT_BASE = 20
_MAX_PROMPT_CHARS = 4_000_000


def now() -> int:
    return int(time.time())


def usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def prompt_tokens(run: Run, thread: ThreadRecord) -> int:
    chars = len(run.instructions)
    for message in thread.messages.values():
        for part in message.content:
            if isinstance(part, TextContent):
                chars += len(part.text.value)
        if chars > _MAX_PROMPT_CHARS:
            break
    return _PROMPT_BASE + chars // 4


def tool_step_usage(prompt: int, calls: list[FunctionToolCall]) -> Usage:
    completion = sum(4 + len(call.function.arguments) // 4 for call in calls)
    return usage(prompt, completion)


def message_usage(prompt: int, parts: list[str], words_per_delta: int) -> Usage:
    return usage(prompt, len(parts) * words_per_delta)


def start(run: Run) -> None:
    """``queued`` -> ``in_progress``; ``started_at`` is re-stamped on resume (spec §2.3 note)."""
    run.status = "in_progress"
    run.started_at = now()


def require_action(run: Run, calls: list[FunctionToolCall], so_far: Usage) -> None:
    run.status = "requires_action"
    run.required_action = RequiredAction(
        submit_tool_outputs=SubmitToolOutputs(
            tool_calls=[
                RequiredToolCall(
                    id=call.id,
                    function=RequiredFunction(
                        name=call.function.name, arguments=call.function.arguments
                    ),
                )
                for call in calls
            ]
        )
    )
    # The spec's example (§2.3) already reports usage at requires_action.
    run.usage = so_far


def _close(
    obj: Run | RunStep, status: str, usage: Usage | None, last_error: LastError | None
) -> int:
    """Set the final ``status`` and its own timestamp (spec §4.1, §4.2); returns the timestamp."""
    stamp = now()
    obj.status = status
    obj.usage = usage
    obj.last_error = last_error
    if status == "completed":
        obj.completed_at = stamp
    elif status == "failed":
        obj.failed_at = stamp
    elif status == "cancelled":
        obj.cancelled_at = stamp
    return stamp


def terminal(
    run: Run,
    status: str,
    total: Usage,
    *,
    last_error: LastError | None = None,
    incomplete_details: IncompleteDetails | None = None,
) -> None:
    _close(run, status, total, last_error)
    run.expires_at = None
    run.required_action = None
    run.incomplete_details = incomplete_details


def new_step(run: Run, details: MessageCreationDetails | ToolCallsDetails) -> RunStep:
    return RunStep(
        id=new_id("step"),
        created_at=now(),
        run_id=run.id,
        assistant_id=run.assistant_id,
        thread_id=run.thread_id,
        type="tool_calls" if isinstance(details, ToolCallsDetails) else "message_creation",
        step_details=details,
    )


def message_creation(message_id: str) -> MessageCreationDetails:
    return MessageCreationDetails(message_creation=MessageCreation(message_id=message_id))


def close_step(
    step: RunStep,
    status: str,
    *,
    usage: Usage | None = None,
    last_error: LastError | None = None,
) -> None:
    stamp = _close(step, status, usage, last_error)
    if status == "expired":
        step.expired_at = stamp


def new_message(run: Run) -> Message:
    return Message(
        id=new_id("msg"),
        created_at=now(),
        assistant_id=run.assistant_id,
        thread_id=run.thread_id,
        run_id=run.id,
        status="in_progress",
        role="assistant",
    )


def finish_message(
    message: Message, status: str, text: str, details: IncompleteDetails | None = None
) -> None:
    stamp = now()
    message.status = status
    message.content = [TextContent(text=Text(value=text))]
    message.incomplete_details = details
    if status == "completed":
        message.completed_at = stamp
    else:
        message.incomplete_at = stamp


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` cut into at most ``pieces`` non-empty consecutive parts (at least one)."""
    if not text:
        return [""]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]
