"""The SSE frame writer: the inverse of ``parsers.sse.SSEDecoder``."""

from __future__ import annotations

__all__ = ["encode_sse"]


def _line(name: bytes, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name.decode()} must not contain CR or LF: {value!r}")
    return name + value.encode() + b"\n"


def encode_sse(
    data: str | bytes,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One SSE frame (ending in its blank line) that ``SSEDecoder`` reads back as the same event.

    Each line of ``data`` becomes its own ``data:`` line. Lines may end in CR, LF or CRLF, but the
    decoder joins data lines with LF, so CR and CRLF inside ``data`` come back as LF. ``bytes``
    data must be UTF-8. An empty ``event`` decodes as ``"message"``. ``event`` and ``id`` must not
    contain CR or LF, nor ``id`` NUL (the decoder would ignore it); each raises ValueError, as do
    a negative ``retry`` and invalid UTF-8.
    """
    if type(data) is bytes:
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = bytes(data)
    if type(data) is not str and not payload.isascii():
        try:
            payload.decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"SSE data is not valid UTF-8: {exc}") from exc
    if 13 in payload:
        payload = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if 10 in payload:
        payload = payload.replace(b"\n", b"\ndata: ")
    frame = b"data: " + payload + b"\n\n"
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int: {retry!r}")
        frame = b"retry: %d\n" % retry + frame
    if id is not None:
        if "\x00" in id:
            raise ValueError(f"SSE id must not contain NUL: {id!r}")
        frame = _line(b"id: ", id) + frame
    if event is not None:
        frame = _line(b"event: ", event) + frame
    return frame
