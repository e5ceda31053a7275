"""The ``POST /v1/chat/completions`` body the simulator reads, and what it reads in messages.

Typed where the simulator acts on a field, everything else of the API's parameter list accepted
and ignored (as for Responses). ``metadata`` is accepted whatever ``store`` says: the official SDK
sends it, and it is where a test picks its scenario (reference responses-and-chat.md §4).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gateway.mock.requests import FunctionDefinition
from gateway.mock.turns import Turn

__all__ = ["ChatStreamOptions", "CreateChatRequest", "fold_messages", "function_definitions"]

_Key = Annotated[str, Meta(max_length=64)]
_Value = Annotated[str, Meta(max_length=512)]
Metadata = Annotated[dict[_Key, _Value], Meta(max_length=16)]
JSON = dict[str, Any]


class ChatStreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class CreateChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: Annotated[list[JSON], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: ChatStreamOptions | None = None
    tools: Annotated[list[JSON], Meta(max_length=128)] = []
    tool_choice: str | JSON | None = None
    parallel_tool_calls: bool | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
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


def fold_messages(turn: Turn, messages: list[JSON]) -> int:
    """Feed ``messages`` to ``turn``; returns the characters of text they carry."""
    chars = 0
    for message in messages:
        role = message.get("role")
        chars += len(_text(message.get("content")))
        if role == "user":
            turn.user()
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            turn.calls(
                [
                    (str(call.get("id")), str((call.get("function") or {}).get("name")))
                    for call in calls
                    if isinstance(call, dict)
                ]
            )
        elif role == "tool":
            turn.output(str(message.get("tool_call_id")), _text(message.get("content")))
    return chars
