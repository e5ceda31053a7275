"""Chat Completions stream chunks as data-only SSE frames ending in ``data: [DONE]`` (reference
responses-and-chat.md §4.1).

Every chunk repeats ``id``, ``object``, ``created`` (the same on every chunk), ``model``,
``service_tier`` and ``system_fingerprint``; a chunk is ``head + delta + tail``, the head and
tails cut once per completion, so a content delta costs one JSON string escape. With
``include_usage`` every chunk says ``"usage":null`` and a last chunk with empty ``choices``
carries the usage. Tool calls follow OpenAI's pattern: a call's first delta carries ``index``,
``id``, ``type`` and ``function.name``, later ones ``index`` and argument fragments; with
``no_index`` the ``index`` is left out (Gemini's OpenAI-compatible API, §5).
"""

from __future__ import annotations

import random
import string

import msgspec

from gateway.mock.frames import json_string

__all__ = ["DONE", "ChunkFramer"]

DONE = b"data: [DONE]\n\n"

_ENCODE = msgspec.json.Encoder().encode
_PAD = 16


class ChunkFramer:
    """Chunk builder of one completion stream."""

    __slots__ = ("_content", "_head", "_no_index", "_obfuscation", "_obfuscation_or_empty",
                 "_usage_tail")  # fmt: skip

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        fingerprint: str,
        include_usage: bool,
        obfuscate: bool,
        no_index: bool,
        rng: random.Random,
    ) -> None:
        self._head = (
            b'data: {"id":'
            + json_string(completion_id)
            + b',"object":"chat.completion.chunk","created":%d,"model":' % created
            + json_string(model)
            + b',"service_tier":"default","system_fingerprint":'
            + json_string(fingerprint)
            + b',"choices":'
        )
        self._usage_tail = b',"usage":null' if include_usage else b""
        self._no_index = no_index
        if obfuscate:
            pad = "".join(rng.choices(string.ascii_letters + string.digits, k=_PAD)).encode()
            self._obfuscation: tuple[bytes, ...] = tuple(
                b',"obfuscation":"' + pad[:size] + b'"' for size in range(_PAD, 0, -1)
            )
        else:
            self._obfuscation = ()
        pads = self._obfuscation or (b"",) * _PAD
        self._obfuscation_or_empty = pads
        # A content delta is one %-format: escaped text, padding.
        self._content = (
            self._head.replace(b"%", b"%%")
            + b'[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]'
            + self._usage_tail
            + b"%s}\n\n"
        )

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        obf = self._obfuscation[len(delta) % _PAD] if self._obfuscation else b""
        return (
            self._head
            + b'[{"index":0,"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + finish
            + b"}]"
            + self._usage_tail
            + obf
            + b"}\n\n"
        )

    def role(self) -> bytes:
        return self._chunk(b'{"role":"assistant","content":"","refusal":null}')

    def content(self, text: str) -> bytes:
        escaped = json_string(text)
        return self._content % (escaped, self._obfuscation_or_empty[len(escaped) % _PAD])

    def _index(self, index: int) -> bytes:
        return b"" if self._no_index else b'"index":%d,' % index

    def call_head(self, index: int, call_id: str, name: str, *, first: bool) -> bytes:
        call = (
            b"{"
            + self._index(index)
            + b'"id":'
            + json_string(call_id)
            + b',"type":"function","function":{"name":'
            + json_string(name)
            + b',"arguments":""}}'
        )
        if first:
            delta = (
                b'{"role":"assistant","content":null,"tool_calls":[' + call + b'],"refusal":null}'
            )
        else:
            delta = b'{"tool_calls":[' + call + b"]}"
        return self._chunk(delta)

    def call_fragment(self, index: int, text: str) -> bytes:
        return self._chunk(
            b'{"tool_calls":[{'
            + self._index(index)
            + b'"function":{"arguments":'
            + json_string(text)
            + b"}}]}"
        )

    def finish(self, reason: str) -> bytes:
        return self._chunk(b"{}", json_string(reason))

    def usage(self, usage: object) -> bytes:
        return self._head + b'[],"usage":' + _ENCODE(usage) + b"}\n\n"

    @staticmethod
    def error(error: object) -> bytes:
        """A mid-stream error chunk (what the SDK raises ``APIError`` on)."""
        return b'data: {"error":' + _ENCODE(error) + b"}\n\n"
