"""Typed chunks and the snapshot reducer of Chat Completions streams (reference
responses-and-chat.md §4).

``decode_chunk`` turns one ``parsers.sse.ServerSentEvent`` into a typed chunk;
:class:`ChatAccumulator` folds the chunks into a ``chat.completion``-shaped snapshot, tolerant of
the OpenAI-compatible servers' deviations. Shares the SSE layer with the other protocols.
"""

from .chunks import (
    AudioDelta,
    ChatCompletionChunk,
    ChatDoneEvent,
    ChatError,
    ChatErrorEvent,
    ChatStreamEvent,
    ChatUnknownEvent,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    EventSource,
    FunctionDelta,
    ToolCallDelta,
    decode_chunk,
)
from .reducer import ChatAccumulator

__all__ = [
    "AudioDelta",
    "ChatAccumulator",
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
