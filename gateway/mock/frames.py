"""Pre-encoded SSE frames (spec §2.1): ``event: <name>`` LF ``data: <json>`` LF LF.

Whole objects (Run, RunStep, Message, Thread) are encoded once per emission with msgspec. The
per-delta frames, which are nearly all of a stream's events, are built from byte templates cut
once per message or step: a constant prefix, the JSON-escaped fragment, a constant suffix. No
per-delta object is built or serialised.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "DONE",
    "MessageDeltaTemplate",
    "ToolCallDeltaTemplate",
    "error_frame",
    "frame",
    "json_string",
]

DONE = b"event: done\ndata: [DONE]\n\n"

json_string = msgspec.json.Encoder().encode
"""``json_string(text)`` -> the JSON string literal of ``text``, quotes included."""


def frame(event: bytes, data: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


def error_frame(code: str, message: str, type: str) -> bytes:
    """``event: error`` with a bare Error object, the spec form of §2.4."""
    data = b'{"code":%s,"message":%s,"param":null,"type":%s}' % (
        json_string(code),
        json_string(message),
        json_string(type),
    )
    return frame(b"error", data)


class MessageDeltaTemplate:
    """``thread.message.delta`` frames of one message's text part 0 (spec §4.4).

    The first delta of the part carries ``"annotations":[]`` like the spec's example (§2.2); later
    ones only the text fragment. A frame is ``prefix + json_string(fragment) + suffix``.
    """

    __slots__ = ("first_suffix", "prefix", "suffix")

    def __init__(self, message_id: str) -> None:
        self.prefix = (
            b'event: thread.message.delta\ndata: {"id":'
            + json_string(message_id)
            + b',"object":"thread.message.delta","delta":{"content":[{"index":0,"type":"text",'
            b'"text":{"value":'
        )
        self.first_suffix = b',"annotations":[]}}]}}\n\n'
        self.suffix = b"}}]}}\n\n"


class ToolCallDeltaTemplate:
    """``thread.run.step.delta`` frames of one function call in a tool-calls step (spec §4.5).

    The first fragment announces ``id``, ``name`` and empty ``arguments`` (spec §2.3); later ones
    append to ``arguments``.
    """

    __slots__ = ("head", "prefix", "suffix")

    def __init__(self, step_id: str, index: int, call_id: str, name: str) -> None:
        start = (
            b'event: thread.run.step.delta\ndata: {"id":'
            + json_string(step_id)
            + b',"object":"thread.run.step.delta","delta":{"step_details":{"type":"tool_calls",'
            b'"tool_calls":[{"index":%d,' % index
        )
        self.head = (
            start
            + b'"id":'
            + json_string(call_id)
            + b',"type":"function","function":{"name":'
            + json_string(name)
            + b',"arguments":"","output":null}}]}}}\n\n'
        )
        self.prefix = start + b'"type":"function","function":{"arguments":'
        self.suffix = b"}}]}}}\n\n"

    def fragment(self, text: str) -> bytes:
        return self.prefix + json_string(text) + self.suffix
