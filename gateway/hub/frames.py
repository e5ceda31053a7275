"""Wire encoding of hub events: SSE frames, HTTP/1.1 chunks and WebSocket frames.

Everything here produces the complete bytes a socket receives, so one encoding of a batch is written
unchanged to every subscriber of a format (no per-subscriber work, spec: fan-out design).

- SSE (WHATWG HTML "server-sent events"): ``event: <name>\\nid: <epoch>-<seq>\\ndata: <line>\\n...``,
  written by the one SSE encoder, ``parsers.sse.encode_sse``. Data holding CR or LF is split into
  one ``data:`` line per line (CRLF, CR and LF all end a line), which a conforming decoder joins
  back with LF.
- HTTP/1.1 chunked transfer-coding (RFC 9112 section 7.1): ``<hex size>\\r\\n<bytes>\\r\\n``; a
  batch is one chunk.
- WebSocket (RFC 6455 section 5.2): server-to-client frames are never masked, so a frame is the
  same bytes for every peer. Text payload ``{"epoch":"e","seq":n,"event":"...","data":<data>}`` (epoch
  and seq null on a notice) with the data
  spliced in as is when it is JSON, else as a JSON string (the ``done`` event's ``[DONE]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from gateway.hub.broker import FrameFormat, HubEvent
from parsers.errors import DECODE_ERRORS
from parsers.sse import encode_sse

__all__ = [
    "SSE_PING",
    "WS_PING",
    "encode_batch",
    "encode_items",
    "encode_notice",
    "heartbeat_frame",
    "http_chunk",
    "sse_frame",
    "ws_close_frame",
    "ws_event_payload",
    "ws_frame",
]

SSE_PING = b": ping\n\n"
WS_OP_TEXT = 0x1
WS_OP_CLOSE = 0x8
WS_OP_PING = 0x9
WS_PING = bytes((0x80 | WS_OP_PING, 0))

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
_Raw = msgspec.Raw

Item = tuple[int | None, str, bytes]
"""(seq or None for an unnumbered notice, event name, data)."""


def _check_name(name: str) -> bytes:
    if "\n" in name or "\r" in name:
        raise ValueError(f"event name must not contain CR or LF: {name!r}")
    return name.encode()


def sse_frame(seq: int | None, name: str, data: bytes, epoch: str = "") -> bytes:
    """One SSE event block with ``id: <epoch>-<seq>``; ``seq`` None leaves the client's last
    event ID unchanged."""
    event_id = None if seq is None else f"{epoch}-{seq}" if epoch else str(seq)
    return encode_sse(data, event=name, id=event_id)


def http_chunk(payload: bytes) -> bytes:
    """``payload`` as one chunk of chunked transfer-coding (empty payload would end the body)."""
    if not payload:
        raise ValueError("an empty chunk terminates a chunked body")
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def ws_frame(payload: bytes, opcode: int = WS_OP_TEXT) -> bytes:
    """A final, unmasked WebSocket frame (RFC 6455 section 5.2 length encoding)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return header + payload


def ws_close_frame(code: int, reason: str = "") -> bytes:
    return ws_frame(code.to_bytes(2, "big") + reason.encode()[:123], WS_OP_CLOSE)


def _json_value(data: bytes) -> bytes:
    try:
        _json_decode(data, type=_Raw)
    except DECODE_ERRORS:
        return _json_encode(data.decode(errors="replace"))
    return data


def ws_event_payload(seq: int | None, name: str, data: bytes, epoch: str = "") -> bytes:
    """The JSON text of one event's WebSocket message; ``data`` spliced in, never re-encoded."""
    if seq is None:
        position = b'"epoch":null,"seq":null'
    else:
        position = b'"epoch":%s,"seq":%d' % (_json_encode(epoch), seq)
    _check_name(name)
    return b'{%s,"event":%s,"data":%s}' % (position, _json_encode(name), _json_value(data))


def encode_items(fmt: FrameFormat, items: Iterable[Item], epoch: str = "") -> bytes:
    """Wire bytes for a sequence of events and notices in ``fmt`` (empty bytes when no items);
    numbered items are positions of ``epoch``."""
    if fmt is FrameFormat.WEBSOCKET:
        return b"".join(ws_frame(ws_event_payload(s, n, d, epoch)) for s, n, d in items)
    body = b"".join(sse_frame(s, n, d, epoch) for s, n, d in items)
    if fmt is FrameFormat.SSE_CHUNKED and body:
        return http_chunk(body)
    return body


def encode_notice(
    fmt: FrameFormat, name: str, data: bytes, *, retry_ms: int | None = None
) -> bytes:
    """One unnumbered notice in ``fmt``; on SSE, ``retry_ms`` adds a ``retry:`` field (the
    reconnection time an ``EventSource`` uses from then on)."""
    if fmt is FrameFormat.WEBSOCKET or retry_ms is None:
        return encode_items(fmt, [(None, name, data)])
    body = encode_sse(data, event=name, retry=retry_ms)
    return http_chunk(body) if fmt is FrameFormat.SSE_CHUNKED else body


def encode_batch(fmt: FrameFormat, epoch: str, first_seq: int, events: Sequence[HubEvent]) -> bytes:
    """Wire bytes of a published batch whose first event is at ``(epoch, first_seq)``."""
    return encode_items(fmt, ((first_seq + i, e.name, e.data) for i, e in enumerate(events)), epoch)


def heartbeat_frame(fmt: FrameFormat) -> bytes:
    if fmt is FrameFormat.WEBSOCKET:
        return WS_PING
    if fmt is FrameFormat.SSE_CHUNKED:
        return http_chunk(SSE_PING)
    return SSE_PING
