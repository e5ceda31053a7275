"""The Run object (spec §4.1) with its required action, tools, tool_choice and response_format."""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from ._common import (
    IncompleteDetails,
    LastError,
    Metadata,
    Model,
    Tagged,
    ToolResources,
    UnknownVariant,
    Usage,
)

__all__ = [
    "CodeInterpreterTool",
    "FileSearchRankingOptions",
    "FileSearchSettings",
    "FileSearchTool",
    "FunctionDefinition",
    "FunctionTool",
    "JSONSchema",
    "NamedToolChoice",
    "NamedToolChoiceFunction",
    "RequiredAction",
    "RequiredFunction",
    "RequiredToolCall",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "Run",
    "SubmitToolOutputs",
    "Tool",
    "ToolChoice",
    "TruncationStrategy",
]


class FunctionDefinition(Model, frozen=True):
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FileSearchRankingOptions(Model, frozen=True):
    ranker: str | None = None
    score_threshold: float = 0.0


class FileSearchSettings(Model, frozen=True):
    max_num_results: int | None = None
    ranking_options: FileSearchRankingOptions | None = None


class CodeInterpreterTool(Tagged, tag="code_interpreter", frozen=True):
    pass


class FileSearchTool(Tagged, tag="file_search", frozen=True):
    file_search: FileSearchSettings | None = None


class FunctionTool(Tagged, tag="function", frozen=True):
    function: FunctionDefinition = msgspec.field(default_factory=FunctionDefinition)


Tool: TypeAlias = CodeInterpreterTool | FileSearchTool | FunctionTool | UnknownVariant
"""``Run.tools[]`` and ``attachments[].tools[]`` (spec §4.8)."""


class NamedToolChoiceFunction(Model, frozen=True):
    name: str = ""


class NamedToolChoice(Model, frozen=True):
    """The object form of ``tool_choice``.

    One untagged Struct with ``type: str`` rather than a tagged union: the variants differ only
    by ``type`` and an optional ``function``, and a new tool type then decodes unchanged.
    """

    type: str = ""
    function: NamedToolChoiceFunction | None = None


ToolChoice: TypeAlias = str | NamedToolChoice
"""``none`` | ``auto`` | ``required`` (kept as ``str`` so new values decode) or a named tool."""


class ResponseFormatText(Tagged, tag="text", frozen=True):
    pass


class ResponseFormatJSONObject(Tagged, tag="json_object", frozen=True):
    pass


class JSONSchema(Model, rename={"schema_": "schema"}, frozen=True):
    name: str = ""
    description: str | None = None
    schema_: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormatJSONSchema(Tagged, tag="json_schema", frozen=True):
    json_schema: JSONSchema = msgspec.field(default_factory=JSONSchema)


ResponseFormat: TypeAlias = (
    str | ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema | UnknownVariant
)
"""``"auto"`` or an object tagged by ``type`` (spec §4.1)."""


class TruncationStrategy(Model, frozen=True):
    type: str = "auto"
    last_messages: int | None = None


class RequiredFunction(Model, frozen=True):
    name: str = ""
    arguments: str = ""
    """JSON text produced by the model; may be invalid JSON (spec §4.1)."""


class RequiredToolCall(Model, frozen=True):
    id: str
    type: str = "function"
    function: RequiredFunction = msgspec.field(default_factory=RequiredFunction)


class SubmitToolOutputs(Model, frozen=True):
    tool_calls: list[RequiredToolCall] = msgspec.field(default_factory=list)


class RequiredAction(Model, frozen=True):
    """Set only while the run is ``requires_action``; answered by one submit_tool_outputs call."""

    type: str = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputs = msgspec.field(default_factory=SubmitToolOutputs)


class Run(Model, frozen=True):
    """``object: "thread.run"``: the payload of every ``thread.run.*`` event (spec §4.1)."""

    id: str
    object: str
    created_at: int = 0
    thread_id: str = ""
    assistant_id: str = ""
    status: str = ""
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    expires_at: int | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str = ""
    # The schema says string, the spec's own examples send null (§4.1).
    instructions: str | None = None
    tools: list[Tool] = msgspec.field(default_factory=list)
    metadata: Metadata | None = None
    usage: Usage | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    tool_resources: ToolResources | None = None
