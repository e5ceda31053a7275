"""Responses stream frames: ``event: <type>`` LF ``data: <json>`` LF LF, ``type`` and
``sequence_number`` first in the JSON (reference responses-and-chat.md §1.1).

With ``data_only`` the ``event:`` line is left out (LiteLLM's framing, §5). Whole events are
encoded once with msgspec; text deltas, nearly all of a stream, are cut from byte templates built
once per content part. Deltas carry ``obfuscation`` padding unless the request turned it off
(``stream_options.include_obfuscation: false``, §1.2): padding that brings the JSON-escaped delta
to a multiple of 16 bytes, drawn from one random string per response.
"""

from __future__ import annotations

import random
import string
from typing import Any

import msgspec

from gateway.mock.frames import json_string

__all__ = ["DONE", "Framer", "TextDeltas"]

DONE = b"data: [DONE]\n\n"

_ENCODE = msgspec.json.Encoder().encode
_PAD = 16


class Framer:
    """Frame builder of one response stream."""

    __slots__ = ("data_only", "obfuscation")

    def __init__(self, *, data_only: bool, obfuscate: bool, rng: random.Random) -> None:
        self.data_only = data_only
        if obfuscate:
            pad = "".join(rng.choices(string.ascii_letters + string.digits, k=_PAD)).encode()
            self.obfuscation: tuple[bytes, ...] = tuple(
                b',"obfuscation":"' + pad[:size] + b'"' for size in range(_PAD, 0, -1)
            )
        else:
            self.obfuscation = ()

    def _head(self, kind: bytes, seq: int) -> bytes:
        line = b"data: " if self.data_only else b"event: " + kind + b"\ndata: "
        return line + b'{"type":"' + kind + b'","sequence_number":%d' % seq

    def event(self, kind: str, seq: int, **fields: Any) -> bytes:
        """One whole event; ``fields`` follow ``type`` and ``sequence_number`` in order."""
        body = b"".join(b',"' + name.encode() + b'":' + _ENCODE(v) for name, v in fields.items())
        return self._head(kind.encode(), seq) + body + b"}\n\n"

    def delta(self, kind: str, seq: int, fields: bytes, text: str, tail: bytes = b"") -> bytes:
        """A ``*.delta`` event: ``fields`` (pre-encoded, comma first), then ``delta``, ``tail``
        and the obfuscation padding."""
        escaped = json_string(text)
        obf = self.obfuscation[len(escaped) % _PAD] if self.obfuscation else b""
        return (
            self._head(kind.encode(), seq) + fields + b',"delta":' + escaped + tail + obf + b"}\n\n"
        )


class TextDeltas:
    """``response.output_text.delta`` frames of one content part, from one format template."""

    __slots__ = ("_obfuscation", "_template")

    def __init__(self, framer: Framer, *, item_id: str, output_index: int, content_index: int):
        kind = b"response.output_text.delta"
        line = b"data: " if framer.data_only else b"event: " + kind + b"\ndata: "
        fields = b',"item_id":%s,"output_index":%d,"content_index":%d,"delta":' % (
            json_string(item_id),
            output_index,
            content_index,
        )
        head = line + b'{"type":"' + kind + b'","sequence_number":'
        # One %-format per frame: sequence number, escaped delta, obfuscation padding.
        self._template = head.replace(b"%", b"%%") + b"%d" + fields + b'%s,"logprobs":[]%s}\n\n'
        self._obfuscation = framer.obfuscation or (b"",) * _PAD

    def frame(self, seq: int, text: str) -> bytes:
        escaped = json_string(text)
        return self._template % (seq, escaped, self._obfuscation[len(escaped) % _PAD])
