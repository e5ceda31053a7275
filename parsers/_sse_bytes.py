"""Byte-level helpers of the SSE decoder: line-break normalisation and UTF-8 checks.

Kept apart from ``parsers.sse`` because none of them knows about events; each works on one
buffer and is either called once per chunk or only on a rare path.
"""

from __future__ import annotations

import re

__all__ = ["is_utf8", "raw_index", "to_lf", "valid_utf8"]

_LONE_CR = re.compile(rb"\r(?!\n)")


def valid_utf8(data: bytes) -> bytes:
    """``data`` itself when it is valid UTF-8, else its U+FFFD-replaced re-encoding."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode()
    return data


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (ASCII answered without decoding)."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def to_lf(chunk: bytes) -> bytes:
    """``chunk`` with CR and CRLF line breaks made LF.

    CRLF-only text, the usual reason for CR, is served by deleting CR (one fast single-byte pass
    after a regex scan for a lone CR) instead of a much slower two-byte ``replace``.
    """
    end = b""
    if chunk[-1] == 13:
        chunk = chunk[:-1]
        end = b"\n"
    if _LONE_CR.search(chunk) is None:
        return chunk.replace(b"\r", b"") + end
    return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + end


def raw_index(raw: bytes, index: int) -> int:
    """Map an index in the CR-normalised form of ``raw`` back to ``raw`` (error reporting only)."""
    shift = 0
    crlf = raw.find(b"\r\n")
    while crlf >= 0 and crlf - shift < index:
        shift += 1
        crlf = raw.find(b"\r\n", crlf + 2)
    return index + shift
