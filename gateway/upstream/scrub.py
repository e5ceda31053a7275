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

Its masked forms are masked too: an upstream error that quotes the key shortened, as OpenAI's
"Incorrect API key provided: sk-proj-*****...cdef" does (and ``sk-UPS...6789``, ``sk-****6789``),
tells its first and last characters. A masked form is a prefix of the key of at least
:data:`SHOWN_FIRST` characters (and at most :data:`SHOWN_FIRST_MAX`), a run of mask characters (``*``, ``.``, ``…``, ``x``, ``X``; at
most the key's length of them) and the key's last :data:`SHOWN_LAST` characters; one regular
expression finds the key and them. The stream scrubber holds back an end that could still become
one as it holds back the start of the key. Keys shorter than 8 characters have no masked forms
(3 + 4 characters would be nearly all of them, and would mask ordinary text).

The usual chunk holds no key at all: one substring search for the key's first
:data:`SHOWN_FIRST` bytes, and a look at its last few bytes, is all it costs.

A response may have more than one secret to lose (runcast's key, or the caller's that its
request was made with): a :class:`ScrubChain` applies one scrubber after the other, to the head
and to each chunk.

Only the key as sent is recognised, not a transformation of it (JSON ``\\u`` escapes, base64):
the defence is against an upstream quoting what it received, not one set on leaking it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypeGuard

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "MASK",
    "SHOWN_FIRST",
    "SHOWN_FIRST_MAX",
    "SHOWN_LAST",
    "ScrubChain",
    "Scrubber",
    "StreamScrubber",
]

MASK: Final = b"***"
SHOWN_FIRST: Final = 3
"""Fewest first characters of the key a masked form shows (``sk-``)."""
SHOWN_LAST: Final = 4
"""Last characters of the key a masked form shows (OpenAI's messages show 4)."""
MIN_KEY_CHARS: Final = 12
"""Shorter keys are not scrubbed from answers (:func:`worth_scrubbing`): a placeholder a local
server takes (``x``, ``EMPTY``, ``ollama``, ``anything``) would turn ordinary words, and JSON
members (``"index"`` with the key ``x``), into ``***`` in every answer, and is no secret."""
SHOWN_FIRST_MAX: Final = 64
"""Most first characters of the key a masked form may show to be recognised: each is one more
alternative of the pattern, which would otherwise grow with the square of a long key's length
(a 4,000-character token took 14.7 s to compile, and its gateway 190 MiB)."""
_HEAD: Final = 32
"""Bytes of the key searched for as a whole before a held-back end is tried byte by byte."""
_MASK_CHAR: Final = "(?:[*.xX]|\u2026)"
_MASK_CHAR_BYTES: Final = _MASK_CHAR.encode()


def worth_scrubbing(secret: str | None) -> TypeGuard[str]:
    """Whether ``secret`` (a key, a credential query value) is long enough to be scrubbed from
    answers without masking ordinary text (:data:`MIN_KEY_CHARS`)."""
    return secret is not None and len(secret) >= MIN_KEY_CHARS


def _shown(key: str) -> str:
    """The alternatives of what a masked form shows after the key's first characters, longest
    first (at one position the longest masked form is the one masked)."""
    longest = min(len(key) - 1, SHOWN_FIRST_MAX)
    return "|".join(re.escape(key[SHOWN_FIRST:n]) for n in range(longest, SHOWN_FIRST - 1, -1))


def _masked_form(key: str) -> str:
    """The regular expression of ``key``'s masked forms, without its first characters."""
    return f"(?:{_shown(key)}){_MASK_CHAR}{{1,{len(key)}}}{re.escape(key[-SHOWN_LAST:])}"


def _unfinished_form(key: str) -> bytes:
    """The regular expression of a body's end that could still become a masked form of ``key``
    (or is one that more bytes could lengthen)."""
    shown = _shown(key)
    last = key[-SHOWN_LAST:]
    ends = "|".join(re.escape(last[:n]) for n in range(len(last), -1, -1))
    run = _MASK_CHAR_BYTES
    return (
        re.escape(key[:SHOWN_FIRST]).encode()
        + f"(?:{shown})".encode()
        # A run, then part of the last characters; or a run cut inside the UTF-8 of `…`.
        + b"(?:%s{1,%d}(?:%s)|%s{0,%d}\xe2\x80?)\\Z"
        % (run, len(key), ends.encode(), run, len(key) - 1)
    )


class Scrubber:
    """Scrubs one key (non-empty) and its masked forms from whole bodies, texts and heads."""

    __slots__ = (
        "_head",
        "_key",
        "_lead",
        "_lead_text",
        "_pattern",
        "_prefixes",
        "_text",
        "_text_pattern",
        "_unfinished",
        "_window",
    )

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a scrubber needs a non-empty key")
        self._key = key
        self._text = key.decode("utf-8", "replace")
        # _prefixes[n] == key[:n]: the stream scrubber's hold-back test slices nothing per chunk.
        self._prefixes = tuple(key[:n] for n in range(len(key)))
        self._head = key[: min(len(key) - 1, _HEAD)] or key
        self._pattern: re.Pattern[bytes] | None = None
        self._text_pattern: re.Pattern[str] | None = None
        self._unfinished: re.Pattern[bytes] | None = None
        # What every key, masked form and long held-back candidate contains (module docstring).
        self._lead, self._lead_text, self._window = self._head, self._text, 0
        text = self._text
        if len(text) >= SHOWN_FIRST + SHOWN_LAST + 1 and text.encode() == key:
            lead = text[:SHOWN_FIRST]
            # One literal start, so that the regex engine looks for it alone; the key first.
            source = f"{re.escape(lead)}(?:{re.escape(text[SHOWN_FIRST:])}|{_masked_form(text)})"
            self._text_pattern = re.compile(source)
            self._pattern = re.compile(source.encode())
            self._unfinished = re.compile(_unfinished_form(text))
            self._lead, self._lead_text = lead.encode(), lead
            # The longest unfinished form: a proper prefix, a run of `…` (3 bytes each), 3 more.
            self._window = len(key) + 3 * len(text) + SHOWN_LAST

    @property
    def key(self) -> bytes:
        return self._key

    def body(self, data: bytes) -> bytes:
        """``data`` with every occurrence of the key, and of its masked forms, replaced by
        :data:`MASK`."""
        if self._lead not in data:
            return data
        if self._pattern is None:
            return data.replace(self._key, MASK)
        return self._pattern.sub(MASK, data)

    def text(self, value: str) -> str:
        if self._lead_text not in value:
            return value
        if self._text_pattern is None:
            return value.replace(self._text, "***")
        return self._text_pattern.sub("***", value)

    def headers(self, headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
        """``headers`` itself when no name or value holds the key, else a scrubbed copy."""
        lead = self._lead_text
        if not any(lead in name or lead in value for name, value in headers.items()):
            return headers
        return CIMultiDictProxy(
            CIMultiDict((self.text(name), self.text(value)) for name, value in headers.items())
        )

    def stream(self) -> StreamScrubber:
        """A scrubber for one body read chunk by chunk."""
        return StreamScrubber(self)

    def scrub_chunk(self, data: bytes) -> tuple[bytes, int]:
        """``data`` scrubbed, and where the end it must hold back starts in the result
        (``len(result)`` when none): the longest end that is a proper prefix of the key, or that
        could still become (or lengthen) a masked form of it. Nothing before that end can be
        part of a key or masked form that continues past it, so what is held back is scrubbed
        with the bytes that follow it, as if they had come in one chunk."""
        # The key, its masked forms and every long candidate contain the key's first bytes: one
        # short search in C, nearly always fruitless, is all the usual chunk costs.
        lead = self._lead in data
        cut = self._held_back(data, lead)
        if not lead:
            return data, cut
        if cut == len(data):
            out = self.body(data)
            return out, len(out)
        out = self.body(data[:cut])
        return out + data[cut:], len(out)

    def _held_back(self, data: bytes, lead: bool) -> int:
        prefixes, head = self._prefixes, self._head
        end = len(data)
        cut = end
        short = max(0, end - len(head) + 1)
        if lead:
            i = data.find(head, max(0, end - len(prefixes) + 1), end)
            while i != -1:
                if data.startswith(prefixes[end - i], i):
                    cut = i
                    break
                i = data.find(head, i + 1, end)
            if self._unfinished is not None:
                found = self._unfinished.search(data, max(0, end - self._window))
                if found is not None and found.start() < cut:
                    cut = found.start()
            if cut < short:
                return cut
        # Only ends shorter than the head are left, tried byte by byte.
        first = head[:1]
        i = data.find(first, short, cut)
        while i != -1:
            if data.startswith(prefixes[end - i], i):
                return i
            i = data.find(first, i + 1, cut)
        return cut


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
        key or a masked form of it, scrubbed; may be ``b""`` when everything is held back."""
        data, cut = self._scrubber.scrub_chunk(self._held + chunk if self._held else chunk)
        if cut == len(data):
            self._held = b""
            return data
        self._held = data[cut:]
        return data[:cut]

    def close(self) -> bytes:
        """The bytes still held at the end of the body, scrubbed (not the whole key, which was
        never completed, but they may end with a masked form of it)."""
        held, self._held = self._held, b""
        return self._scrubber.body(held) if held else held


class ScrubChain:
    """Several scrubbers applied one after the other to a response's head and body (a chain of
    one is the scrubber alone): :meth:`feed` each body chunk, :meth:`close` at its end.

    Each scrubber's stream scrubs what the one before it gave out, so the outputs concatenated
    equal the scrubbers' :meth:`Scrubber.body` applied in turn to the whole body."""

    __slots__ = ("_scrubbers", "_streams")

    def __init__(self, scrubbers: Sequence[Scrubber]) -> None:
        self._scrubbers = tuple(scrubbers)
        self._streams = tuple(scrubber.stream() for scrubber in self._scrubbers)

    def text(self, value: str) -> str:
        for scrubber in self._scrubbers:
            value = scrubber.text(value)
        return value

    def headers(self, headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
        for scrubber in self._scrubbers:
            headers = scrubber.headers(headers)
        return headers

    def feed(self, chunk: bytes) -> bytes:
        for stream in self._streams:
            if not chunk:
                break
            chunk = stream.feed(chunk)
        return chunk

    def close(self) -> bytes:
        out = b""
        for stream in self._streams:
            out = (stream.feed(out) if out else b"") + stream.close()
        return out
