"""The ``POST /v1/responses`` and ``POST /v1/conversations`` bodies the simulator reads.

The fields the simulator acts on are typed and checked (a wrong type is a 400 naming the path);
the rest of the API's long and growing parameter list is accepted and ignored, so every call the
official SDK can make goes through. Input items stay plain JSON objects: the simulator reads the
few keys it needs (``role``, ``type``, ``call_id``, ``output``, ``name``) with the helpers below,
once :data:`INPUT_VIEW` has checked the types of those it reads as strings.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gateway.mock.requests import FunctionDefinition

__all__ = [
    "INPUT_VIEW",
    "ConversationRef",
    "CreateConversationRequest",
    "CreateResponseRequest",
    "ItemView",
    "StreamOptions",
    "function_definitions",
    "input_items",
    "text_chars",
]

_Key = Annotated[str, Meta(max_length=64)]
_Value = Annotated[str, Meta(max_length=512)]
Metadata = Annotated[dict[_Key, _Value], Meta(max_length=16)]
JSON = dict[str, Any]


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_obfuscation: bool | None = None


class ConversationRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str


class CreateResponseRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    input: str | list[JSON] | None = None
    instructions: str | None = None
    tools: Annotated[list[JSON], Meta(max_length=128)] = []
    tool_choice: str | JSON | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    store: bool | None = None
    metadata: Metadata | None = None
    max_output_tokens: Annotated[int, Meta(ge=16)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    reasoning: JSON | None = None
    text: JSON | None = None
    truncation: str | None = None
    user: str | None = None
    service_tier: str | None = None

    @property
    def conversation_id(self) -> str | None:
        conv = self.conversation
        return conv.id if isinstance(conv, ConversationRef) else conv


class ItemView(msgspec.Struct, frozen=True, kw_only=True):
    """The keys of an input item the simulator reads as strings (``fold_items``, and ``id``
    echoed as a list's ``first_id``); an item without ``type`` is a message."""

    type: str = "message"
    id: str | None = None
    role: str | None = None
    call_id: str | None = None
    name: str | None = None


INPUT_VIEW = str | list[ItemView] | None
"""What a response's ``input`` and a conversation's ``items`` must convert to (``check_view``)."""


class CreateConversationRequest(msgspec.Struct, frozen=True, kw_only=True):
    items: list[JSON] | None = None
    metadata: Metadata | None = None


def input_items(value: str | list[JSON] | None) -> list[JSON]:
    """The input as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value


def function_definitions(tools: list[JSON]) -> list[FunctionDefinition]:
    """The function tools of a request (``{"type": "function", "name": ..., ...}``)."""
    out = []
    for tool in tools:
        if tool.get("type") == "function" and isinstance(tool.get("name"), str):
            params = tool.get("parameters")
            out.append(
                FunctionDefinition(
                    name=tool["name"],
                    description=tool.get("description"),
                    parameters=params if isinstance(params, dict) else None,
                )
            )
    return out


def text_chars(item: JSON) -> int:
    """Characters of text an input item carries (for the token estimate)."""
    total = 0
    for key in ("content", "output", "arguments"):
        value = item.get(key)
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(
                len(text)
                for p in value
                if isinstance(p, dict) and isinstance(text := p.get("text"), str)
            )
    return total
