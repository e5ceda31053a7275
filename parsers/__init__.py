"""Sans-I/O parsing of run streams: bytes -> SSE events -> typed run events -> run snapshot.

Nothing in this package performs I/O or imports asyncio, aiohttp or redis (a test proves it).
The layers, one module each:

* :mod:`parsers.sse` - WHATWG event-stream decoder over bytes, and the matching encoder;
* :mod:`parsers.assistants` - msgspec models of the Assistants objects and :func:`decode_event`;
* :mod:`parsers.accumulate` - :class:`RunAccumulator`, folding typed events into a snapshot;
* :mod:`parsers.responses` - Responses API events, :func:`decode_response_event` and
  :class:`ResponseAccumulator`;
* :mod:`parsers.chat` - Chat Completions chunks, :func:`decode_chunk` and :class:`ChatAccumulator`;
* :mod:`parsers.errors` - the root of runcast's exception hierarchy.

Protocol-specific code lives in its own subpackage (``assistants``, ``responses``, ``chat``) and
shares the SSE layer.
"""

from .accumulate import RunAccumulator, RunSnapshot, encode_snapshot
from .assistants import AssistantStreamEvent, decode_event
from .chat import ChatAccumulator, ChatStreamEvent, decode_chunk
from .errors import (
    DECODE_ERRORS,
    EventDecodeError,
    EventTooLarge,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RuncastError,
)
from .responses import ResponseAccumulator, ResponseStreamEvent
from .responses import decode_event as decode_response_event
from .sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder, encode_sse

__all__ = [
    "DECODE_ERRORS",
    "DEFAULT_MAX_EVENT_BYTES",
    "AssistantStreamEvent",
    "ChatAccumulator",
    "ChatStreamEvent",
    "EventDecodeError",
    "EventTooLarge",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseAccumulator",
    "ResponseStreamEvent",
    "RunAccumulator",
    "RunSnapshot",
    "RuncastError",
    "SSEDecoder",
    "ServerSentEvent",
    "decode_chunk",
    "decode_event",
    "decode_response_event",
    "encode_snapshot",
    "encode_sse",
]
