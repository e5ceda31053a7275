"""Run steps (spec §4.2) and run-step deltas (spec §4.5), with their tool-call unions.

Delta Structs use ``msgspec.UNSET`` for "key absent" so a merge can tell it from an explicit
``null`` (``function.output`` is null until outputs are submitted).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from ._common import LastError, Metadata, Model, Tagged, UnknownVariant, Usage

__all__ = [
    "CodeInterpreter",
    "CodeInterpreterDelta",
    "CodeInterpreterImage",
    "CodeInterpreterImageDelta",
    "CodeInterpreterImageOutput",
    "CodeInterpreterImageOutputDelta",
    "CodeInterpreterLogs",
    "CodeInterpreterLogsDelta",
    "CodeInterpreterOutput",
    "CodeInterpreterOutputDelta",
    "CodeInterpreterToolCall",
    "CodeInterpreterToolCallDelta",
    "FileSearchCall",
    "FileSearchCallRankingOptions",
    "FileSearchResult",
    "FileSearchResultContent",
    "FileSearchToolCall",
    "FileSearchToolCallDelta",
    "FunctionCall",
    "FunctionCallDelta",
    "FunctionToolCall",
    "FunctionToolCallDelta",
    "MessageCreation",
    "MessageCreationDelta",
    "MessageCreationStepDetails",
    "MessageCreationStepDetailsDelta",
    "RunStep",
    "RunStepDelta",
    "RunStepDeltaBody",
    "StepDetails",
    "StepDetailsDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallsStepDetails",
    "ToolCallsStepDetailsDelta",
]

# -- full objects ---------------------------------------------------------------------------------


class FunctionCall(Model, frozen=True):
    name: str = ""
    arguments: str = ""
    output: str | None = None


class FunctionToolCall(Tagged, tag="function", frozen=True):
    id: str
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class CodeInterpreterLogs(Tagged, tag="logs", frozen=True):
    logs: str = ""


class CodeInterpreterImage(Model, frozen=True):
    file_id: str = ""


class CodeInterpreterImageOutput(Tagged, tag="image", frozen=True):
    image: CodeInterpreterImage = msgspec.field(default_factory=CodeInterpreterImage)


CodeInterpreterOutput: TypeAlias = CodeInterpreterLogs | CodeInterpreterImageOutput | UnknownVariant


class CodeInterpreter(Model, frozen=True):
    input: str = ""
    outputs: list[CodeInterpreterOutput] = msgspec.field(default_factory=list)


class CodeInterpreterToolCall(Tagged, tag="code_interpreter", frozen=True):
    id: str
    code_interpreter: CodeInterpreter = msgspec.field(default_factory=CodeInterpreter)


class FileSearchCallRankingOptions(Model, frozen=True):
    ranker: str = ""
    score_threshold: float = 0.0


class FileSearchResultContent(Model, frozen=True):
    type: str | None = None
    text: str | None = None


class FileSearchResult(Model, frozen=True):
    file_id: str = ""
    file_name: str = ""
    score: float = 0.0
    # Present only with the include[] value of spec §1.2.
    content: list[FileSearchResultContent] | None = None


class FileSearchCall(Model, frozen=True):
    ranking_options: FileSearchCallRankingOptions | None = None
    results: list[FileSearchResult] | None = None


class FileSearchToolCall(Tagged, tag="file_search", frozen=True):
    id: str
    file_search: FileSearchCall = msgspec.field(default_factory=FileSearchCall)


ToolCall: TypeAlias = (
    FunctionToolCall | CodeInterpreterToolCall | FileSearchToolCall | UnknownVariant
)


class MessageCreation(Model, frozen=True):
    message_id: str = ""


class MessageCreationStepDetails(Tagged, tag="message_creation", frozen=True):
    message_creation: MessageCreation = msgspec.field(default_factory=MessageCreation)


class ToolCallsStepDetails(Tagged, tag="tool_calls", frozen=True):
    # Empty at creation in streams; filled by deltas, complete in thread.run.step.completed.
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)


StepDetails: TypeAlias = MessageCreationStepDetails | ToolCallsStepDetails | UnknownVariant


class RunStep(Model, frozen=True):
    """``object: "thread.run.step"``: the payload of the non-delta ``thread.run.step.*`` events."""

    id: str
    object: str
    created_at: int = 0
    assistant_id: str = ""
    thread_id: str = ""
    run_id: str = ""
    type: str = ""
    status: str = ""
    step_details: StepDetails | None = None
    last_error: LastError | None = None
    # The schema names it expired_at, the spec's stream examples send expires_at (§4.2): keep both.
    expired_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    metadata: Metadata | None = None
    usage: Usage | None = None


# -- deltas ---------------------------------------------------------------------------------------


class FunctionCallDelta(Model, frozen=True):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET
    output: str | UnsetType | None = UNSET


class FunctionToolCallDelta(Tagged, tag="function", frozen=True):
    # index is the merge key (spec §4.5 marks it required); a delta without it is undecodable.
    index: int
    id: str | UnsetType = UNSET
    function: FunctionCallDelta | UnsetType = UNSET


class CodeInterpreterLogsDelta(Tagged, tag="logs", frozen=True):
    index: int
    logs: str | UnsetType = UNSET


class CodeInterpreterImageDelta(Model, frozen=True):
    file_id: str | UnsetType = UNSET


class CodeInterpreterImageOutputDelta(Tagged, tag="image", frozen=True):
    index: int
    image: CodeInterpreterImageDelta | UnsetType = UNSET


CodeInterpreterOutputDelta: TypeAlias = (
    CodeInterpreterLogsDelta | CodeInterpreterImageOutputDelta | UnknownVariant
)


class CodeInterpreterDelta(Model, frozen=True):
    input: str | UnsetType = UNSET
    outputs: list[CodeInterpreterOutputDelta] | UnsetType = UNSET


class CodeInterpreterToolCallDelta(Tagged, tag="code_interpreter", frozen=True):
    index: int
    id: str | UnsetType = UNSET
    code_interpreter: CodeInterpreterDelta | UnsetType = UNSET


class FileSearchToolCallDelta(Tagged, tag="file_search", frozen=True):
    index: int
    id: str | UnsetType = UNSET
    # An opaque object in the spec (§4.5).
    file_search: dict[str, Any] | UnsetType = UNSET


ToolCallDelta: TypeAlias = (
    FunctionToolCallDelta | CodeInterpreterToolCallDelta | FileSearchToolCallDelta | UnknownVariant
)


class MessageCreationDelta(Model, frozen=True):
    message_id: str | UnsetType = UNSET


class MessageCreationStepDetailsDelta(Tagged, tag="message_creation", frozen=True):
    message_creation: MessageCreationDelta | UnsetType = UNSET


class ToolCallsStepDetailsDelta(Tagged, tag="tool_calls", frozen=True):
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET


StepDetailsDelta: TypeAlias = (
    MessageCreationStepDetailsDelta | ToolCallsStepDetailsDelta | UnknownVariant
)


class RunStepDeltaBody(Model, frozen=True):
    step_details: StepDetailsDelta | UnsetType = UNSET


class RunStepDelta(Model, frozen=True):
    """``object: "thread.run.step.delta"``: a step fragment; only ``id`` locates the step."""

    id: str
    object: str
    delta: RunStepDeltaBody = msgspec.field(default_factory=RunStepDeltaBody)
