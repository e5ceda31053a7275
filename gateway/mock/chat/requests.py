"""The ``POST /v1/chat/completions`` body the simulator reads, and what it reads in messages.

Typed where the simulator acts on a field, everything else of the API's parameter list accepted
and ignored (as for Responses). Of a message, the keys the simulator reads are typed
(:class:`ChatMessage`), so a wrong type there is a 400 naming its path, not a crash. ``metadata``
is accepted whatever ``store`` says: the official SDK sends it, and it is where a test picks its
scenario (reference responses-and-chat.md §4).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gateway.mock.requests import FunctionDefinition
from gateway.mock.turns import Turn

__all__ = [
    "ChatFunctionCall",
    "ChatMessage",
    "ChatStreamOptions",
    "ChatToolCall",
    "CreateChatRequest",
    "fold_messages",
    "function_definitions",
]

_Key = Annotated[str, Meta(max_length=64)]
_Value = Annotated[str, Meta(max_length=512)]
Metadata = Annotated[dict[_Key, _Value], Meta(max_length=16)]
JSON = dict[str, Any]


class ChatStreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatFunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None = None


class ChatToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None
    function: ChatFunctionCall | None = None


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator reads of a message; its other keys are accepted and ignored."""

    role: str | None = None
    content: Any = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None


# OpenAI refuses a limit below 1: "integer below minimum value" (max_tokens=0 included).
TokenLimit = Annotated[int, Meta(ge=1)]


class CreateChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: ChatStreamOptions | None = None
    tools: Annotated[list[JSON], Meta(max_length=128)] = []
    tool_choice: str | JSON | None = None
    parallel_tool_calls: bool | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None


def function_definitions(tools: list[JSON]) -> list[FunctionDefinition]:
    """The function tools of a request (``{"type": "function", "function": {...}}``)."""
    out = []
    for tool in tools:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            name = function.get("name")
            params = function.get("parameters")
            if isinstance(name, str):
                out.append(
                    FunctionDefinition(
                        name=name,
                        description=function.get("description"),
                        parameters=params if isinstance(params, dict) else None,
                    )
                )
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            text for p in content if isinstance(p, dict) and isinstance(text := p.get("text"), str)
        )
    return ""


def fold_messages(turn: Turn, messages: list[ChatMessage]) -> int:
    """Feed ``messages`` to ``turn``; returns the characters of text they carry."""
    chars = 0
    for message in messages:
        chars += len(_text(message.content))
        if message.role == "user":
            turn.user()
        elif message.role == "assistant":
            turn.calls(
                [
                    (str(call.id), str(call.function.name if call.function else None))
                    for call in message.tool_calls or ()
                ]
            )
        elif message.role == "tool":
            turn.output(str(message.tool_call_id), _text(message.content))
    return chars
