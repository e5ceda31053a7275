"""Fold one run's typed events into a :class:`RunSnapshot` (what a late subscriber is sent).

Theory of operation. Deltas carry only the id of their message or step (spec §2.5), so the
accumulator keeps one state per id in arrival order. A state holds the latest full object seen
(``base``) and, once deltas arrive, the parts merged from them. Merge rules (spec Appendix C,
§4.4, §4.5), unlike the openai SDK's generic walker which also adds integers:

* content parts, tool calls, annotations and code-interpreter outputs merge by their ``index``;
  a new index creates the entry, a different ``type`` at an index replaces it;
* text-like strings append: ``text.value``, annotation ``text``, ``refusal``, ``image_url.url``,
  ``function.arguments``, ``function.output``, ``code_interpreter.input``, ``logs``;
* identifiers and enums replace: ``id``, ``type``, ``name``, ``file_id``, ``detail``, ``role``,
  ``message_id``, and integers (``start_index``/``end_index``) replace, never add.

``thread.message.completed``/``incomplete`` and the final step events (completed, failed,
cancelled, expired) replace the accumulated object, partial delta text included (how a run
recovered after a broken stream ends complete); so does any full step event that lists its tool
calls (created/in-progress events carry an empty list, before any delta). Each delta only appends fragments to lists;
text is joined in :meth:`RunAccumulator.snapshot`, which also collapses the fragments it joined,
so repeated snapshots stay linear.

Memory. :attr:`RunAccumulator.nbytes` estimates what the state holds, for callers that bound
memory: a full object counts the ``size`` its caller gives (the JSON it was decoded from), a text
delta the characters it appends plus a fragment's overhead, other deltas their ``size``. A full
object replaces the estimate of the one it replaces (and a final one the deltas merged before
it). Joining fragments in a snapshot frees memory the estimate keeps counting: it errs high.

One accumulator folds one run, across the HTTP streams it spans (the continuation after
``submit_tool_outputs`` included). A delta for an id never announced (a step created on an
earlier stream this accumulator did not see) starts from a stub object instead of failing.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET

from ._accumulate_content import (
    PartState,
    build_content,
    merge_content,
    seed_content,
)
from ._accumulate_tools import (
    MessageCreationDetailsDelta,
    ToolCallState,
    build_tool_calls,
    merge_tool_calls,
    seed_tool_calls,
)
from .assistants import (
    AssistantStreamEvent,
    DoneEvent,
    ErrorEvent,
    ErrorObject,
    Message,
    MessageCreationStepDetailsDelta,
    MessageDelta,
    MessageDeltaEvent,
    MessageEvent,
    Run,
    RunEvent,
    RunStep,
    RunStepDelta,
    RunStepDeltaEvent,
    RunStepEvent,
    Thread,
    ThreadEvent,
    ToolCallsStepDetails,
    ToolCallsStepDetailsDelta,
    Usage,
)

__all__ = ["RunAccumulator", "RunSnapshot", "encode_snapshot"]

_OBJECT_OVERHEAD = 128
"""Bytes a kept full object (run, message, step...) costs beyond its JSON size, roughly."""

_FINAL_MESSAGE_EVENTS = frozenset({"thread.message.completed", "thread.message.incomplete"})
_FINAL_STEP_EVENTS = frozenset(
    {
        "thread.run.step.completed",
        "thread.run.step.failed",
        "thread.run.step.cancelled",
        "thread.run.step.expired",
    }
)


class RunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The run as known so far: encode with :func:`encode_snapshot` (or ``msgspec.json.encode``).

    ``messages`` and ``steps`` are in announcement order; each is a full ``Message``/``RunStep``
    whose content or tool calls include every delta received. ``usage`` is the latest non-null
    run usage; ``error`` the last ``event: error``; ``done`` whether ``[DONE]`` was seen on the
    latest stream.
    """

    run_id: str | None = None
    thread_id: str | None = None
    status: str | None = None
    run: Run | None = None
    thread: Thread | None = None
    messages: list[Message] = msgspec.field(default_factory=list)
    steps: list[RunStep] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    error: ErrorObject | None = None
    done: bool = False


class _MessageState:
    __slots__ = ("base", "base_bytes", "delta_bytes", "parts", "role")

    def __init__(self, base: Message) -> None:
        self.base = base
        self.base_bytes = 0
        self.delta_bytes = 0
        # None: base.content is authoritative (no delta since the last full message).
        self.parts: dict[int, PartState] | None = None
        self.role: str | None = None

    def snapshot(self) -> Message:
        if self.parts is None and self.role is None:
            return self.base
        content = build_content(self.parts) if self.parts is not None else self.base.content
        role = self.role if self.role is not None else self.base.role
        return msgspec.structs.replace(self.base, content=content, role=role)


class _StepState:
    __slots__ = ("base", "base_bytes", "calls", "delta_bytes", "details")

    def __init__(self, base: RunStep) -> None:
        self.base = base
        self.base_bytes = 0
        self.delta_bytes = 0
        self.calls: dict[int, ToolCallState] | None = None
        self.details: MessageCreationDetailsDelta | None = None

    def snapshot(self) -> RunStep:
        if self.calls is not None:
            return msgspec.structs.replace(self.base, step_details=build_tool_calls(self.calls))
        if self.details is not None:
            return msgspec.structs.replace(self.base, step_details=self.details.build())
        return self.base


def _lists_calls(step: RunStep) -> bool:
    """A full step that lists its tool calls is authoritative for them, whatever its status:
    the in-progress step runcast publishes for a run recovered at ``requires_action``."""
    details = step.step_details
    return isinstance(details, ToolCallsStepDetails) and bool(details.tool_calls)


class RunAccumulator:
    """Reducer over :data:`~parsers.assistants.AssistantStreamEvent`; cheap per delta."""

    __slots__ = (
        "_done",
        "_error",
        "_messages",
        "_nbytes",
        "_object_bytes",
        "_run",
        "_steps",
        "_thread",
        "_thread_id",
        "_usage",
    )

    def __init__(self) -> None:
        self._run: Run | None = None
        self._thread: Thread | None = None
        self._thread_id: str | None = None
        self._messages: dict[str, _MessageState] = {}
        self._steps: dict[str, _StepState] = {}
        self._usage: Usage | None = None
        self._error: ErrorObject | None = None
        self._done = False
        self._nbytes = 0
        # Estimates of the run, thread and error objects held, by event kind.
        self._object_bytes: dict[type, int] = {}

    @property
    def nbytes(self) -> int:
        """Estimated bytes the state holds (see "Memory" above)."""
        return self._nbytes

    def apply(self, event: AssistantStreamEvent, size: int = 0) -> None:
        """Fold one event in; ``size`` is the length of the JSON it came from (for
        :attr:`nbytes`). Unknown events are ignored (they carry no typed payload)."""
        # Exact type tests first: the two delta events are nearly all of the traffic.
        if type(event) is MessageDeltaEvent:
            self._message_delta(event.data, size)
        elif type(event) is RunStepDeltaEvent:
            self._step_delta(event.data, size)
        elif isinstance(event, RunEvent):
            self._on_run(event.data)
            self._held_object(RunEvent, size)
        elif isinstance(event, MessageEvent):
            self._on_message(event.event, event.data, size)
        elif isinstance(event, RunStepEvent):
            self._on_step(event.event, event.data, size)
        elif isinstance(event, ThreadEvent):
            self._thread = event.data
            self._thread_id = self._thread_id or event.data.id
            self._held_object(ThreadEvent, size)
        elif isinstance(event, ErrorEvent):
            self._error = event.data
            self._held_object(ErrorEvent, size)
        elif isinstance(event, DoneEvent):
            self._done = True

    def _held_object(self, kind: type, size: int) -> None:
        cost = size + _OBJECT_OVERHEAD
        self._nbytes += cost - self._object_bytes.get(kind, 0)
        self._object_bytes[kind] = cost

    def snapshot(self) -> RunSnapshot:
        run = self._run
        return RunSnapshot(
            run_id=run.id if run is not None else self._guess_run_id(),
            thread_id=self._thread_id,
            status=run.status if run is not None else None,
            run=run,
            thread=self._thread,
            messages=[state.snapshot() for state in self._messages.values()],
            steps=[state.snapshot() for state in self._steps.values()],
            usage=self._usage,
            error=self._error,
            done=self._done,
        )

    # -- full objects ---------------------------------------------------------------------------

    def _on_run(self, run: Run) -> None:
        self._run = run
        self._done = False
        if run.thread_id:
            self._thread_id = run.thread_id
        if run.usage is not None:
            self._usage = run.usage

    def _on_message(self, name: str, message: Message, size: int) -> None:
        cost = size + _OBJECT_OVERHEAD
        state = self._messages.get(message.id)
        if state is None:
            state = self._messages[message.id] = _MessageState(message)
            self._note_thread(message.thread_id)
            state.base_bytes = cost
            self._nbytes += cost
            return
        state.base = message
        self._nbytes += cost - state.base_bytes
        state.base_bytes = cost
        if name in _FINAL_MESSAGE_EVENTS:
            state.parts = None
            state.role = None
            self._nbytes -= state.delta_bytes
            state.delta_bytes = 0

    def _on_step(self, name: str, step: RunStep, size: int) -> None:
        cost = size + _OBJECT_OVERHEAD
        state = self._steps.get(step.id)
        if state is None:
            state = self._steps[step.id] = _StepState(step)
            self._note_thread(step.thread_id)
        state.base = step
        self._nbytes += cost - state.base_bytes
        state.base_bytes = cost
        if name in _FINAL_STEP_EVENTS or _lists_calls(step):
            state.calls = None
            state.details = None
            self._nbytes -= state.delta_bytes
            state.delta_bytes = 0

    def _note_thread(self, thread_id: str) -> None:
        if self._thread_id is None and thread_id:
            self._thread_id = thread_id

    def _guess_run_id(self) -> str | None:
        for step in self._steps.values():
            if step.base.run_id:
                return step.base.run_id
        for message in self._messages.values():
            if message.base.run_id:
                return message.base.run_id
        return None

    # -- deltas ---------------------------------------------------------------------------------

    def _message_delta(self, delta: MessageDelta, size: int) -> None:
        state = self._messages.get(delta.id)
        if state is None:
            stub = Message(
                id=delta.id,
                object="thread.message",
                thread_id=self._thread_id or "",
                status="in_progress",
                role="assistant",
                run_id=self._run.id if self._run is not None else None,
            )
            state = self._messages[delta.id] = _MessageState(stub)
        body = delta.delta
        if body.role is not UNSET:
            state.role = body.role
        if body.content is UNSET:
            return
        parts = state.parts
        if parts is None:
            parts = state.parts = seed_content(state.base.content)
        growth = merge_content(parts, body.content)
        if growth < 0:  # not only text (a rare, small delta): its JSON as the estimate
            growth = size
        state.delta_bytes += growth
        self._nbytes += growth

    def _step_delta(self, delta: RunStepDelta, size: int) -> None:
        state = self._steps.get(delta.id)
        if state is None:
            stub = RunStep(
                id=delta.id,
                object="thread.run.step",
                thread_id=self._thread_id or "",
                run_id=self._run.id if self._run is not None else "",
                status="in_progress",
            )
            state = self._steps[delta.id] = _StepState(stub)
        details = delta.delta.step_details
        if details is UNSET:
            return
        state.delta_bytes += size
        self._nbytes += size
        if isinstance(details, ToolCallsStepDetailsDelta):
            if details.tool_calls is UNSET:
                return
            calls = state.calls
            if calls is None:
                calls = state.calls = seed_tool_calls(state.base.step_details)
            merge_tool_calls(calls, details.tool_calls)
        elif isinstance(details, MessageCreationStepDetailsDelta):
            state.details = MessageCreationDetailsDelta.merge(
                state.details, state.base.step_details, details.message_creation
            )


_ENCODER = msgspec.json.Encoder()


def encode_snapshot(snapshot: RunSnapshot) -> bytes:
    """JSON bytes of ``snapshot`` (``UNSET`` fields never occur in it; ``None`` is ``null``)."""
    return _ENCODER.encode(snapshot)
