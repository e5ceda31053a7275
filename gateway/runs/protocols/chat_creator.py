"""Chat chunks as a tool chain's creator gets them (``creator_hold.py``), from their bytes.

:func:`said_with_calls` cuts a chunk that turns a round to tool calls and also says something
(Ollama and llama.cpp send an assistant's text and a whole tool call in one delta) in two: its
text (the choices' deltas without ``tool_calls``/``function_call``, no ``finish_reason``,
``usage`` null) and its calls (the rest), each a chunk with the same ``id``, ``model``,
``created`` ... :func:`usage` and :func:`with_usage` read and replace a chunk's ``usage``.
:func:`names` tells whether a chunk names the role; :func:`without_role` takes it out of a later
round's deltas once the creator has it: the SDK joins string members across chunks, and each
round's first chunk names the role again (``assistantassistant``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.hub import HubEvent
from parsers.chat import ChatCompletionChunk
from parsers.errors import DECODE_ERRORS

__all__ = ["names", "said_with_calls", "usage", "with_usage", "without_role"]

_CALLS = ("tool_calls", "function_call")
_SILENT = ("role", *_CALLS)
"""Delta members that say nothing to the reader."""
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


def said_with_calls(event: HubEvent) -> tuple[HubEvent, HubEvent] | None:
    """A turning chunk's text and its calls as two chunks, or None when its choices say nothing
    beside their calls."""
    chunk = _decode(event.data)
    choices = chunk.get("choices")
    said: list[Any] = []
    calls: list[Any] = []
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or not _says(delta):
            calls.append(choice)
            continue
        text = {key: value for key, value in delta.items() if key not in _CALLS}
        said.append({**choice, "delta": text, "finish_reason": None})
        rest = {**choice, "delta": {key: delta[key] for key in _CALLS if key in delta}}
        if "logprobs" in choice:
            rest["logprobs"] = None  # the text's, given with it
        calls.append(rest)
    if not said:
        return None
    text_chunk = {**chunk, "choices": said}
    if "usage" in chunk:
        text_chunk["usage"] = None  # the round's, given (or carried on) with its calls
    # The calls keep the typed chunk (its usage is theirs).
    calls_event = HubEvent(event.name, _encode({**chunk, "choices": calls}), event.decoded)
    return HubEvent(event.name, _encode(text_chunk)), calls_event


def _says(delta: dict[str, Any]) -> bool:
    return any(value not in (None, "") for key, value in delta.items() if key not in _SILENT)


def usage(event: HubEvent) -> dict[str, Any] | None:
    """The ``usage`` a chunk carries, as sent (None: not a chunk, or no usage)."""
    typed = event.decoded
    if type(typed) is not ChatCompletionChunk or typed.usage is None:
        return None
    found = _decode(event.data).get("usage")
    return found if isinstance(found, dict) else None


def with_usage(event: HubEvent, billed: dict[str, Any]) -> HubEvent:
    """A chunk carrying ``usage`` with ``billed`` in its place."""
    return HubEvent(event.name, _encode({**_decode(event.data), "usage": billed}), event.decoded)


def names(event: HubEvent) -> bool:
    """Whether a chunk's bytes name the role in one of its deltas."""
    if b'"role"' not in event.data:
        return False
    try:
        chunk = _decode(event.data)
    except DECODE_ERRORS:
        return False
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and delta.get("role"):
            return True
    return False


def without_role(event: HubEvent) -> HubEvent:
    """A chunk with no ``role`` in its deltas (itself when none has one)."""
    typed = event.decoded
    if type(typed) is ChatCompletionChunk:
        if not any(c.delta.role for c in typed.choices):
            return event
    elif typed is not None or b'"role"' not in event.data:
        return event  # not a chunk; or one cut here (said_with_calls), untyped, without a role
    try:
        chunk = _decode(event.data)
    except DECODE_ERRORS:  # an undecodable event, relayed as received
        return event
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            delta.pop("role", None)
    return HubEvent(event.name, _encode(chunk), event.decoded)
