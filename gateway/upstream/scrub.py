"""Removing runcast's upstream key from everything the upstream sends back.

An upstream may quote the key it was sent (an ``event: error`` or error body echoing the
request, a debugging header). Whatever it sends reaches callers, every subscriber of the run's
channels, their history and the snapshots, so the key is replaced by :data:`MASK` where the bytes
enter runcast: :class:`~gateway.upstream.transport.UpstreamResponse` scrubs the response head
with :meth:`Scrubber.headers` and every body chunk with a :class:`StreamScrubber`. Without a key
nothing here runs at all.

A key split across two chunks is still found: the stream scrubber holds back the longest end of
a chunk that is the start of the key (at most ``len(key) - 1`` bytes, and nothing at all in the
usual case of a chunk ending an SSE event, since a key holds no line break), so no event is
delayed waiting for bytes that cannot complete the key.

Only the key as sent is recognised, not a transformation of it (JSON ``\\u`` escapes, base64):
the defence is against an upstream quoting what it received, not one set on leaking it.
"""

from __future__ import annotations

from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["MASK", "Scrubber", "StreamScrubber"]

MASK: Final = b"***"
_HEAD: Final = 32
"""Bytes of the key searched for as a whole before a held-back end is tried byte by byte."""


class Scrubber:
    """Scrubs one key (non-empty) from whole bodies, texts and response heads."""

    __slots__ = ("_head", "_key", "_prefixes", "_text")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a scrubber needs a non-empty key")
        self._key = key
        self._text = key.decode("utf-8", "replace")
        # _prefixes[n] == key[:n]: the stream scrubber's hold-back test slices nothing per chunk.
        self._prefixes = tuple(key[:n] for n in range(len(key)))
        self._head = key[: min(len(key) - 1, _HEAD)] or key

    @property
    def key(self) -> bytes:
        return self._key

    def body(self, data: bytes) -> bytes:
        """``data`` with every occurrence of the key replaced by :data:`MASK`."""
        return data.replace(self._key, MASK) if self._key in data else data

    def text(self, value: str) -> str:
        return value.replace(self._text, "***") if self._text in value else value

    def headers(self, headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
        """``headers`` itself when no name or value holds the key, else a scrubbed copy."""
        key = self._text
        if not any(key in name or key in value for name, value in headers.items()):
            return headers
        return CIMultiDictProxy(
            CIMultiDict((self.text(name), self.text(value)) for name, value in headers.items())
        )

    def stream(self) -> StreamScrubber:
        """A scrubber for one body read chunk by chunk."""
        return StreamScrubber(self)

    def scrub_chunk(self, data: bytes) -> tuple[bytes, int]:
        """``data`` scrubbed, and where its longest end that is a proper prefix of the key
        starts (``len(data)`` when none is): what a stream must hold back."""
        prefixes, head = self._prefixes, self._head
        end = len(data)
        short = max(0, end - len(head) + 1)
        # The key and every long candidate contain its first bytes: one short search in C,
        # nearly always fruitless (a search for the whole key costs more: its length).
        if head in data:
            data = self.body(data)
            end = len(data)
            short = max(0, end - len(head) + 1)
            i = data.find(head, max(0, end - len(prefixes) + 1), end)
            while i != -1:
                if data.startswith(prefixes[end - i], i):
                    return data, i
                i = data.find(head, i + 1, end)
        # Only ends shorter than the head are left, tried byte by byte.
        first = head[:1]
        i = data.find(first, short)
        while i != -1:
            if data.startswith(prefixes[end - i], i):
                return data, i
            i = data.find(first, i + 1)
        return data, end


class StreamScrubber:
    """Scrubs one body chunk by chunk: :meth:`feed` each chunk, :meth:`close` at its end.

    Concatenating every output equals :meth:`Scrubber.body` of the whole body, however it was
    chunked.
    """

    __slots__ = ("_held", "_scrubber")

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of ``chunk`` (and of those held before) that can no longer be part of the
        key, scrubbed; may be ``b""`` when everything is held back."""
        data, cut = self._scrubber.scrub_chunk(self._held + chunk if self._held else chunk)
        if cut == len(data):
            self._held = b""
            return data
        self._held = data[cut:]
        return data[:cut]

    def close(self) -> bytes:
        """The bytes still held at the end of the body (not the key: it was never completed)."""
        held, self._held = self._held, b""
        return held
