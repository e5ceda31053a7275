"""Sans-I/O parsing of run streams: bytes -> SSE events -> typed run events -> run snapshot.

Nothing in this package performs I/O or imports asyncio, aiohttp or redis (a test proves it).
The layers, one module each:

* :mod:`parsers.sse` - WHATWG event-stream decoder over bytes, and the matching encoder;
* :mod:`parsers.assistants` - msgspec models of the Assistants objects and :func:`decode_event`;
* :mod:`parsers.accumulate` - :class:`RunAccumulator`, folding typed events into a snapshot;
* :mod:`parsers.errors` - the root of runcast's exception hierarchy.

Protocol-specific code (Assistants today; Responses and Chat Completions later) lives in its own
subpackage beside ``assistants`` and shares the SSE layer.
"""

from .accumulate import RunAccumulator, RunSnapshot, encode_snapshot
from .assistants import AssistantStreamEvent, decode_event
from .errors import (
    EventDecodeError,
    EventTooLarge,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RuncastError,
)
from .sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder, encode_sse

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "AssistantStreamEvent",
    "EventDecodeError",
    "EventTooLarge",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RunAccumulator",
    "RunSnapshot",
    "RuncastError",
    "SSEDecoder",
    "ServerSentEvent",
    "decode_event",
    "encode_snapshot",
    "encode_sse",
]
