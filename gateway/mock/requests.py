"""Strict msgspec Structs for the request bodies the simulator accepts (spec §1.3).

Unknown keys are rejected (``forbid_unknown_fields``) and ranges are enforced with ``Meta``, so a
malformed body fails with a 400 naming the offending path. Tool definitions double as the ``tools``
echoed on Assistant and Run objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "CodeInterpreterTool",
    "CreateAssistantRequest",
    "CreateMessageRequest",
    "CreateRunRequest",
    "CreateThreadAndRunRequest",
    "CreateThreadRequest",
    "FileSearchTool",
    "FunctionDefinition",
    "FunctionTool",
    "ImageFile",
    "ImageFilePart",
    "ImageUrl",
    "ImageUrlPart",
    "ModifyRunRequest",
    "SubmitToolOutputsRequest",
    "TextPart",
    "Tool",
    "ToolOutput",
]

_Key = Annotated[str, Meta(max_length=64)]
_Value = Annotated[str, Meta(max_length=512)]
# spec §4.1: at most 16 keys, keys up to 64 chars, values up to 512 chars.
Metadata = Annotated[dict[_Key, _Value], Meta(max_length=16)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
TopP = Annotated[float, Meta(ge=0, le=1)]
TokenLimit = Annotated[int, Meta(ge=256)]
Detail = Literal["auto", "low", "high"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies: immutable, keyword-only, unknown keys rejected."""


class FunctionDefinition(_Strict, frozen=True):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Strict, frozen=True, tag="function", tag_field="type"):
    function: FunctionDefinition


class CodeInterpreterTool(_Strict, frozen=True, tag="code_interpreter", tag_field="type"):
    pass


class FileSearchTool(_Strict, frozen=True, tag="file_search", tag_field="type"):
    file_search: dict[str, Any] | None = None


Tool = FunctionTool | CodeInterpreterTool | FileSearchTool
Tools = Annotated[list[Tool], Meta(max_length=128)]
# spec §1.3: a run takes at most 20 tools.
RunTools = Annotated[list[Tool], Meta(max_length=20)]


class ImageFile(_Strict, frozen=True):
    file_id: str
    detail: Detail | None = None


class ImageUrl(_Strict, frozen=True):
    url: str
    detail: Detail | None = None


class TextPart(_Strict, frozen=True, tag="text", tag_field="type"):
    text: str


class ImageFilePart(_Strict, frozen=True, tag="image_file", tag_field="type"):
    image_file: ImageFile


class ImageUrlPart(_Strict, frozen=True, tag="image_url", tag_field="type"):
    image_url: ImageUrl


class AttachmentTool(_Strict, frozen=True):
    type: Literal["code_interpreter", "file_search"]


class Attachment(_Strict, frozen=True):
    file_id: str | None = None
    tools: list[AttachmentTool] | None = None


class CreateMessageRequest(_Strict, frozen=True):
    role: Literal["user", "assistant"]
    content: str | list[TextPart | ImageFilePart | ImageUrlPart]
    attachments: list[Attachment] | None = None
    metadata: Metadata | None = None


class TruncationStrategy(_Strict, frozen=True):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Meta(ge=1)] | None = None


class NamedFunction(_Strict, frozen=True):
    name: str


class ToolChoiceObject(_Strict, frozen=True):
    type: Literal["function", "code_interpreter", "file_search"]
    function: NamedFunction | None = None


class ResponseFormatText(_Strict, frozen=True, tag="text", tag_field="type"):
    pass


class ResponseFormatJsonObject(_Strict, frozen=True, tag="json_object", tag_field="type"):
    pass


class ResponseFormatJsonSchema(_Strict, frozen=True, tag="json_schema", tag_field="type"):
    json_schema: dict[str, Any]


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceObject
ResponseFormat = (
    Literal["auto"] | ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema
)


class CreateAssistantRequest(_Strict, frozen=True):
    model: str
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    tools: Tools = []
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    tool_resources: dict[str, Any] | None = None


class CreateThreadRequest(_Strict, frozen=True):
    messages: list[CreateMessageRequest] | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None


class _RunOptions(_Strict, frozen=True):
    """Fields shared by create-run and create-thread-and-run (spec §1.3)."""

    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: RunTools | None = None
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = None
    max_prompt_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class CreateRunRequest(_RunOptions, frozen=True):
    reasoning_effort: ReasoningEffort | None = None
    additional_instructions: str | None = None
    additional_messages: list[CreateMessageRequest] | None = None


class CreateThreadAndRunRequest(_RunOptions, frozen=True):
    thread: CreateThreadRequest | None = None
    tool_resources: dict[str, Any] | None = None


class ModifyRunRequest(_Strict, frozen=True):
    """``POST /threads/{thread_id}/runs/{run_id}``: only ``metadata`` may change (spec §1.2)."""

    metadata: Metadata | None = None


class ToolOutput(_Strict, frozen=True):
    tool_call_id: str
    output: str


class SubmitToolOutputsRequest(_Strict, frozen=True):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
