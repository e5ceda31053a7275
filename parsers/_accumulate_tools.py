"""Merge state for run-step tool calls (used by ``parsers.accumulate``).

Each tool-call state is seeded from a full step's ``tool_calls``, merges
``thread.run.step.delta`` fragments by tool-call ``index`` (the first fragment brings id and
name, later ones append to ``arguments`` or ``code_interpreter.input``; outputs merge by their
own ``index``) and builds full tool calls back.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from msgspec import UNSET

from ._accumulate_content import build_states, index_of, joined, state_at
from .assistants import (
    CodeInterpreter,
    CodeInterpreterImage,
    CodeInterpreterImageOutput,
    CodeInterpreterImageOutputDelta,
    CodeInterpreterLogs,
    CodeInterpreterLogsDelta,
    CodeInterpreterOutput,
    CodeInterpreterOutputDelta,
    CodeInterpreterToolCall,
    CodeInterpreterToolCallDelta,
    FileSearchCall,
    FileSearchToolCall,
    FileSearchToolCallDelta,
    FunctionCall,
    FunctionToolCall,
    FunctionToolCallDelta,
    MessageCreation,
    MessageCreationDelta,
    MessageCreationStepDetails,
    StepDetails,
    ToolCall,
    ToolCallDelta,
    ToolCallsStepDetails,
    UnknownVariant,
)

__all__ = [
    "MessageCreationDetailsDelta",
    "ToolCallState",
    "build_tool_calls",
    "merge_tool_calls",
    "seed_tool_calls",
]


class _FunctionCallState:
    __slots__ = ("arguments", "id", "name", "output")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []
        self.output: list[str] | None = None

    def build(self) -> FunctionToolCall:
        output = joined(self.output) if self.output is not None else None
        return FunctionToolCall(
            id=self.id,
            function=FunctionCall(
                name=self.name,
                arguments=joined(self.arguments),
                output=output,
            ),
        )


class _LogsState:
    __slots__ = ("fragments",)

    def __init__(self) -> None:
        self.fragments: list[str] = []

    def build(self) -> CodeInterpreterLogs:
        return CodeInterpreterLogs(logs=joined(self.fragments))


class _ImageOutputState:
    __slots__ = ("file_id",)

    def __init__(self) -> None:
        self.file_id = ""

    def build(self) -> CodeInterpreterImageOutput:
        return CodeInterpreterImageOutput(image=CodeInterpreterImage(file_id=self.file_id))


_OutputState: TypeAlias = _LogsState | _ImageOutputState | UnknownVariant


class _CodeInterpreterState:
    __slots__ = ("id", "input", "outputs")

    def __init__(self) -> None:
        self.id = ""
        self.input: list[str] = []
        self.outputs: dict[int, _OutputState] = {}

    def seed_outputs(self, outputs: list[CodeInterpreterOutput]) -> None:
        for index, output in enumerate(outputs):
            state: _OutputState
            if isinstance(output, CodeInterpreterLogs):
                state = _LogsState()
                state.fragments.append(output.logs)
            elif isinstance(output, CodeInterpreterImageOutput):
                state = _ImageOutputState()
                state.file_id = output.image.file_id
            else:
                state = output
            self.outputs[index] = state

    def merge_outputs(self, deltas: list[CodeInterpreterOutputDelta]) -> None:
        outputs = self.outputs
        for delta in deltas:
            if isinstance(delta, CodeInterpreterLogsDelta):
                logs = state_at(outputs, delta.index, _LogsState)
                if delta.logs is not UNSET:
                    logs.fragments.append(delta.logs)
            elif isinstance(delta, CodeInterpreterImageOutputDelta):
                image = state_at(outputs, delta.index, _ImageOutputState)
                if delta.image is not UNSET and delta.image.file_id is not UNSET:
                    image.file_id = delta.image.file_id
            else:
                outputs[index_of(delta.raw, len(outputs))] = delta

    def build(self) -> CodeInterpreterToolCall:
        return CodeInterpreterToolCall(
            id=self.id,
            code_interpreter=CodeInterpreter(
                input=joined(self.input), outputs=build_states(self.outputs)
            ),
        )


class _FileSearchState:
    __slots__ = ("file_search", "id")

    def __init__(self) -> None:
        self.id = ""
        # Opaque in deltas (spec §4.5): keys merge shallowly, later values replace.
        self.file_search: dict[str, object] = {}

    def build(self) -> FileSearchToolCall:
        try:
            file_search = msgspec.convert(self.file_search, FileSearchCall)
        except msgspec.ValidationError:
            file_search = FileSearchCall()
        return FileSearchToolCall(id=self.id, file_search=file_search)


ToolCallState: TypeAlias = (
    _FunctionCallState | _CodeInterpreterState | _FileSearchState | UnknownVariant
)


def seed_tool_calls(details: StepDetails | None) -> dict[int, ToolCallState]:
    """Tool-call states equal to a full step's ``tool_calls`` (list position is the index)."""
    calls: dict[int, ToolCallState] = {}
    if not isinstance(details, ToolCallsStepDetails):
        return calls
    for index, call in enumerate(details.tool_calls):
        state: ToolCallState
        if isinstance(call, FunctionToolCall):
            state = _FunctionCallState()
            state.id = call.id
            state.name = call.function.name
            state.arguments.append(call.function.arguments)
            if call.function.output is not None:
                state.output = [call.function.output]
        elif isinstance(call, CodeInterpreterToolCall):
            state = _CodeInterpreterState()
            state.id = call.id
            state.input.append(call.code_interpreter.input)
            state.seed_outputs(call.code_interpreter.outputs)
        elif isinstance(call, FileSearchToolCall):
            state = _FileSearchState()
            state.id = call.id
            state.file_search = msgspec.to_builtins(call.file_search)
        else:
            state = call
        calls[index] = state
    return calls


def merge_tool_calls(calls: dict[int, ToolCallState], deltas: list[ToolCallDelta]) -> None:
    """Merge one ``step_details.tool_calls`` list into ``calls`` (by tool-call ``index``)."""
    for delta in deltas:
        if type(delta) is FunctionToolCallDelta:
            # state_at inlined: argument fragments are the bulk of step deltas.
            function = calls.get(delta.index)
            if type(function) is not _FunctionCallState:
                function = calls[delta.index] = _FunctionCallState()
            if delta.id is not UNSET:
                function.id = delta.id
            fragment = delta.function
            if fragment is not UNSET:
                if fragment.name is not UNSET:
                    function.name = fragment.name
                if fragment.arguments is not UNSET:
                    function.arguments.append(fragment.arguments)
                if fragment.output is not UNSET and fragment.output is not None:
                    if function.output is None:
                        function.output = []
                    function.output.append(fragment.output)
        elif isinstance(delta, CodeInterpreterToolCallDelta):
            code = state_at(calls, delta.index, _CodeInterpreterState)
            if delta.id is not UNSET:
                code.id = delta.id
            body = delta.code_interpreter
            if body is not UNSET:
                if body.input is not UNSET:
                    code.input.append(body.input)
                if body.outputs is not UNSET:
                    code.merge_outputs(body.outputs)
        elif isinstance(delta, FileSearchToolCallDelta):
            search = state_at(calls, delta.index, _FileSearchState)
            if delta.id is not UNSET:
                search.id = delta.id
            if delta.file_search is not UNSET:
                search.file_search.update(delta.file_search)
        elif isinstance(delta, UnknownVariant):
            calls[index_of(delta.raw, len(calls))] = delta


def build_tool_calls(calls: dict[int, ToolCallState]) -> ToolCallsStepDetails:
    tool_calls: list[ToolCall] = build_states(calls)
    return ToolCallsStepDetails(tool_calls=tool_calls)


class MessageCreationDetailsDelta:
    """``message_creation`` step details rebuilt from a delta (``message_id`` replaces)."""

    __slots__ = ("message_id",)

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id

    @classmethod
    def merge(
        cls,
        current: MessageCreationDetailsDelta | None,
        base: StepDetails | None,
        delta: MessageCreationDelta | msgspec.UnsetType,
    ) -> MessageCreationDetailsDelta:
        if current is None:
            seeded = (
                base.message_creation.message_id
                if isinstance(base, MessageCreationStepDetails)
                else ""
            )
            current = cls(seeded)
        if delta is not UNSET and delta.message_id is not UNSET:
            current.message_id = delta.message_id
        return current

    def build(self) -> MessageCreationStepDetails:
        return MessageCreationStepDetails(
            message_creation=MessageCreation(message_id=self.message_id)
        )
