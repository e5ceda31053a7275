"""Chat Completions stream chunks and ``decode_chunk`` (reference responses-and-chat.md §4).

The stream is data-only SSE: one ``chat.completion.chunk`` JSON object per event, ended by
``data: [DONE]``. Models follow the openai SDK's ``ChatCompletionChunk`` with every field
optional, because OpenAI-compatible servers leave fields out: tool-call ``index`` (Gemini),
``id`` (vLLM#18412), ``object`` (Azure async-filter chunks have ``""``), ``delta`` (choices of
filter results), ``logprobs`` (§5). Ollama's ``reasoning`` and vLLM's ``reasoning_content``
deltas are modelled as they are common, and so are the ``annotations`` (web search's
``url_citation``) and ``audio`` (``modalities: ["audio"]``) the SDK's message carries. Rules of
:func:`decode_chunk`, in order:

* a JSON object -> :class:`ChatCompletionChunk`, or :class:`ChatErrorEvent` when it carries
  ``error`` (llama.cpp sends ``data: {"error": ...}`` mid-stream, §5);
* ``[DONE]`` (exact) -> :class:`ChatDoneEvent`; empty data -> :class:`ChatUnknownEvent` with the
  bytes as received;
* a chunk msgspec rejects for half a surrogate pair escaped on its own (a character split across
  two deltas) is decoded as the SDK decodes it, the half kept (``parsers._surrogates``);
* anything else -> :class:`~parsers.errors.EventDecodeError`.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, TypeAlias

import msgspec

from .._surrogates import loads_lone_surrogates
from ..errors import DECODE_ERRORS, EventDecodeError

__all__ = [
    "AudioDelta",
    "ChatCompletionChunk",
    "ChatDoneEvent",
    "ChatError",
    "ChatErrorEvent",
    "ChatStreamEvent",
    "ChatUnknownEvent",
    "ChoiceDelta",
    "ChunkChoice",
    "CompletionUsage",
    "EventSource",
    "FunctionDelta",
    "ToolCallDelta",
    "decode_chunk",
]


class _Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every chunk model (frozen: one decoded chunk is shared by every consumer)."""


class FunctionDelta(_Model, frozen=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Model, frozen=True):
    """One ``tool_calls`` entry: ``index`` names the call; absent on some servers."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class AudioDelta(_Model, frozen=True):
    """A piece of an audio answer: ``data`` (base64) and ``transcript`` come in fragments."""

    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class ChoiceDelta(_Model, frozen=True):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionDelta | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    annotations: list[Any] | None = None
    audio: AudioDelta | None = None


class ChunkChoice(_Model, frozen=True):
    index: int = 0
    delta: ChoiceDelta = ChoiceDelta()
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CompletionUsage(_Model, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class ChatError(_Model, frozen=True):
    """An error sent inside the stream; ``code`` is a string or an HTTP status number."""

    message: str = ""
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class ChatCompletionChunk(_Model, frozen=True):
    """``usage`` is set only on the final chunk of ``stream_options.include_usage`` (whose
    ``choices`` is empty); ``obfuscation`` is OpenAI's padding (§1.2)."""

    id: str = ""
    object: str = ""
    created: int | None = None
    model: str | None = None
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    obfuscation: str | None = None
    error: ChatError | str | None = None


class ChatErrorEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    error: ChatError


class ChatDoneEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``data: [DONE]``: the end of the stream (the only end a chat stream has)."""


class ChatUnknownEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event with nothing to type (empty data); ``data`` as received."""

    data: bytes


ChatStreamEvent: TypeAlias = ChatCompletionChunk | ChatErrorEvent | ChatDoneEvent | ChatUnknownEvent
"""What :func:`decode_chunk` returns."""


class EventSource(Protocol):
    """What :func:`decode_chunk` reads from a ``parsers.sse.ServerSentEvent``."""

    @property
    def data_bytes(self) -> bytes: ...


_decode: Final = msgspec.json.Decoder(ChatCompletionChunk).decode
_DONE: Final = ChatDoneEvent()


def decode_chunk(sse: EventSource) -> ChatStreamEvent:
    """Turn one SSE event of a chat stream into a typed event (rules in the module docstring)."""
    data = sse.data_bytes
    try:
        chunk = _decode(data)
    except msgspec.ValidationError as exc:
        if data == b"[DONE]":
            return _DONE
        raise EventDecodeError("chat.completion.chunk", str(exc)) from exc
    except DECODE_ERRORS as exc:
        if not data.strip():
            return ChatUnknownEvent(data=data)
        chunk = _with_lone_surrogates(data, exc)
    if chunk.error is not None:
        error = chunk.error
        return ChatErrorEvent(
            error=error if isinstance(error, ChatError) else ChatError(message=error)
        )
    return chunk


def _with_lone_surrogates(data: bytes, exc: Exception) -> ChatCompletionChunk:
    value = loads_lone_surrogates(data)
    if value is None:
        raise EventDecodeError("chat.completion.chunk", str(exc)) from exc
    try:
        return msgspec.convert(value, ChatCompletionChunk)
    except msgspec.ValidationError as invalid:
        raise EventDecodeError("chat.completion.chunk", str(invalid)) from invalid
