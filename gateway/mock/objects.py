"""The wire objects the simulator stores and serves: Assistant, Thread, Message, Run, RunStep.

msgspec Structs whose field order follows the spec's examples (§2.2, §4), so an encoded Run reads
like the fixtures. They are mutable on purpose: the run engine is their single writer and every
event encodes a fresh snapshot at the moment it is emitted, so no payload is shared or changed
after it left. ``ENCODER`` is built once for the whole package.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.mock.requests import (
    Attachment,
    ImageFile,
    ImageUrl,
    ResponseFormat,
    Tool,
    ToolChoice,
    TruncationStrategy,
)

__all__ = [
    "ENCODER",
    "Assistant",
    "FunctionCall",
    "FunctionToolCall",
    "ImageFileContent",
    "ImageUrlContent",
    "IncompleteDetails",
    "LastError",
    "Message",
    "MessageCreation",
    "MessageCreationDetails",
    "RequiredAction",
    "RequiredFunction",
    "RequiredToolCall",
    "Run",
    "RunStep",
    "SubmitToolOutputs",
    "Text",
    "TextContent",
    "Thread",
    "ToolCallsDetails",
    "Usage",
]

ENCODER = msgspec.json.Encoder()


class Usage(msgspec.Struct, kw_only=True, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class LastError(msgspec.Struct, kw_only=True, frozen=True):
    code: str
    message: str


class IncompleteDetails(msgspec.Struct, kw_only=True, frozen=True):
    reason: str


class Assistant(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None = None
    description: str | None = None
    model: str
    instructions: str | None = None
    tools: list[Tool] = []
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] = {}
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    response_format: ResponseFormat | None = "auto"


class Thread(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    metadata: dict[str, str] = {}
    tool_resources: dict[str, Any] | None = None


class Text(msgspec.Struct, kw_only=True):
    value: str
    annotations: list[Any] = []


class TextContent(msgspec.Struct, kw_only=True, tag="text", tag_field="type"):
    text: Text


class ImageFileContent(msgspec.Struct, kw_only=True, tag="image_file", tag_field="type"):
    image_file: ImageFile


class ImageUrlContent(msgspec.Struct, kw_only=True, tag="image_url", tag_field="type"):
    image_url: ImageUrl


Content = TextContent | ImageFileContent | ImageUrlContent


class Message(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    assistant_id: str | None = None
    thread_id: str
    run_id: str | None = None
    status: str = "completed"
    incomplete_details: IncompleteDetails | None = None
    incomplete_at: int | None = None
    completed_at: int | None = None
    role: str
    content: list[Content] = []
    attachments: list[Attachment] = []
    metadata: dict[str, str] = {}


class RequiredFunction(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    arguments: str


class RequiredToolCall(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    type: Literal["function"] = "function"
    function: RequiredFunction


class SubmitToolOutputs(msgspec.Struct, kw_only=True, frozen=True):
    tool_calls: list[RequiredToolCall]


class RequiredAction(msgspec.Struct, kw_only=True, frozen=True):
    type: Literal["submit_tool_outputs"] = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputs


class Run(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    assistant_id: str
    thread_id: str
    status: str = "queued"
    started_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    model: str
    instructions: str = ""
    tools: list[Tool] = []
    metadata: dict[str, str] = {}
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    max_completion_tokens: int | None = None
    max_prompt_tokens: int | None = None
    truncation_strategy: TruncationStrategy = TruncationStrategy(type="auto")
    incomplete_details: IncompleteDetails | None = None
    usage: Usage | None = None
    response_format: ResponseFormat | None = "auto"
    tool_choice: ToolChoice | None = "auto"
    parallel_tool_calls: bool = True


class MessageCreation(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str


class MessageCreationDetails(
    msgspec.Struct, kw_only=True, frozen=True, tag="message_creation", tag_field="type"
):
    message_creation: MessageCreation


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str
    output: str | None = None


class FunctionToolCall(msgspec.Struct, kw_only=True, tag="function", tag_field="type"):
    id: str
    function: FunctionCall


class ToolCallsDetails(msgspec.Struct, kw_only=True, tag="tool_calls", tag_field="type"):
    tool_calls: list[FunctionToolCall] = []


class RunStep(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    run_id: str
    assistant_id: str
    thread_id: str
    type: str
    status: str = "in_progress"
    cancelled_at: int | None = None
    completed_at: int | None = None
    expired_at: int | None = None
    failed_at: int | None = None
    last_error: LastError | None = None
    step_details: MessageCreationDetails | ToolCallsDetails
    usage: Usage | None = None
    metadata: dict[str, str] = {}
