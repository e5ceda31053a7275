"""The Responses API objects the simulator stores and serves: Response, its output items, usage.

Field order follows the recorded streams of reference responses-and-chat.md §1.1 and the golden
streams in ``tests/data/responses``. Mutable on purpose, like the Assistants objects: the driver is
the single writer and every event encodes a snapshot when it is emitted.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "Conversation",
    "ConversationId",
    "FunctionCallItem",
    "InputTokensDetails",
    "MessageItem",
    "OutputItem",
    "OutputText",
    "OutputTokensDetails",
    "Response",
    "ResponseError",
    "ResponseIncompleteDetails",
    "ResponseUsage",
]


class OutputText(msgspec.Struct, kw_only=True, tag="output_text", tag_field="type"):
    annotations: list[Any] = []
    logprobs: list[Any] = []
    text: str = ""


class MessageItem(msgspec.Struct, kw_only=True, tag="message", tag_field="type"):
    id: str
    status: str = "in_progress"
    content: list[OutputText] = []
    role: Literal["assistant"] = "assistant"


class FunctionCallItem(msgspec.Struct, kw_only=True, tag="function_call", tag_field="type"):
    id: str
    status: str = "in_progress"
    arguments: str = ""
    call_id: str
    name: str


OutputItem = MessageItem | FunctionCallItem


class InputTokensDetails(msgspec.Struct, kw_only=True, frozen=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, kw_only=True, frozen=True):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, kw_only=True, frozen=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class ResponseError(msgspec.Struct, kw_only=True, frozen=True):
    code: str
    message: str


class ResponseIncompleteDetails(msgspec.Struct, kw_only=True, frozen=True):
    reason: str


class ConversationId(msgspec.Struct, kw_only=True, frozen=True):
    id: str


class Response(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: str = "in_progress"
    background: bool = False
    completed_at: int | None = None
    conversation: ConversationId | None = None
    error: ResponseError | None = None
    incomplete_details: ResponseIncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"effort": None, "summary": None}
    )
    store: bool = True
    temperature: float = 1.0
    text: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"format": {"type": "text"}, "verbosity": "medium"}
    )
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float = 1.0
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}


class Conversation(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str] = {}
