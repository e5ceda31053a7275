"""A subscriber's WebSocket frames that are not masked close it with 1002 (RFC 6455 §5.1).

"The server MUST close the connection upon receiving a frame that is not masked" (RFC 6455
§5.1, a client masks every frame). aiohttp's frame reader unmasks a masked frame and takes an
unmasked one as it is; its other protocol errors (reserved bits or opcodes, a fragmented or
oversized control frame) fail its queue with ``WebSocketError(1002)``, on which
``WebSocketResponse.receive`` sends close 1002 and the connection ends.

:class:`MaskScan` follows the frame boundaries of a client's bytes (headers read, payloads
skipped, sans-I/O) and names the first header without the mask bit. :class:`MaskedFrames` stands
in front of aiohttp's reader: it hands the reader every byte before that header, then fails the
reader's queue with the same ``WebSocketError(1002)`` its own checks raise and takes no more
input. :class:`StrictWebSocketResponse` puts it in place of the reader, bytes that came with the
upgrade request included (aiohttp feeds those to its reader as it installs it).
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import WebSocketError, WSCloseCode, web
from aiohttp.http import WebSocketReader

__all__ = ["MaskScan", "MaskedFrames", "StrictWebSocketResponse"]

_MASK_BIT = 0x80
_LENGTH = 0x7F
_EXTENDED = {126: 2, 127: 8}
"""RFC 6455 §5.2: a 7-bit length of 126 or 127 is followed by a 16- or 64-bit length."""
_MASK_KEY = 4
_UNMASKED = "Received frame that is not masked"


class _Queue(Protocol):
    """What :class:`MaskedFrames` needs of aiohttp's ``WebSocketDataQueue``."""

    def set_exception(self, exc: BaseException) -> None: ...


class MaskScan:
    """The frame boundaries of a client's byte stream: :meth:`feed` returns the offset, in the
    bytes given, of the first frame header without the mask bit (negative when that header
    began in earlier bytes), or None. After it returns an offset it must not be fed again."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head = bytearray()
        """The current frame header's bytes so far."""
        self._skip = 0
        """Payload bytes of the current frame still to come."""

    def feed(self, data: bytes) -> int | None:
        pos, end, head = 0, len(data), self._head
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._header_size() - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) < 2:
                continue
            if not head[1] & _MASK_BIT:
                return pos - len(head)
            if len(head) == self._header_size():
                self._skip = self._payload_length()
                head.clear()
        return None

    def _header_size(self) -> int:
        head = self._head
        if len(head) < 2:
            return 2
        return 2 + _EXTENDED.get(head[1] & _LENGTH, 0) + _MASK_KEY

    def _payload_length(self) -> int:
        head = self._head
        extended = _EXTENDED.get(head[1] & _LENGTH, 0)
        if not extended:
            return head[1] & _LENGTH
        return int.from_bytes(head[2 : 2 + extended], "big")


class MaskedFrames:
    """aiohttp's frame reader, behind a :class:`MaskScan` (the parser a ``RequestHandler``
    feeds a WebSocket's bytes to: ``feed_data`` returns ``(eof, tail)`` as the reader's does)."""

    __slots__ = ("_failed", "_queue", "_reader", "_scan")

    def __init__(self, reader: WebSocketReader, queue: _Queue) -> None:
        self._reader = reader
        self._queue = queue
        """The reader's ``WebSocketDataQueue`` (the reader does not expose it)."""
        self._scan = MaskScan()
        self._failed = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        if type(data) is not bytes:
            data = bytes(data)
        at = self._scan.feed(data)
        if at is None:
            return self._reader.feed_data(data)
        self._failed = True
        if at > 0:
            eof, tail = self._reader.feed_data(data[:at])
            if eof:
                return eof, tail  # the reader failed first, on a frame before it
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, _UNMASKED))
        return True, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class StrictWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose peer's unmasked frames close it with 1002.

    It reaches into aiohttp's private ``_post_start``, ``RequestHandler._message_tail`` and
    ``_payload_parser`` (the tests of ``test_hub_transports.py`` fail if they change); an aiohttp
    without them reads frames its own way (unmasked ones taken) rather than failing every
    subscription.
    """

    def _post_start(self, request: web.BaseRequest, *args: Any, **kwargs: Any) -> None:
        handler = request.protocol
        early = getattr(handler, "_message_tail", None)
        if not isinstance(early, bytes) or not hasattr(handler, "_payload_parser"):
            super()._post_start(request, *args, **kwargs)
            return
        # aiohttp feeds the bytes that came after the upgrade request to its reader as it
        # installs it: they go through the scan too.
        handler._message_tail = b""
        super()._post_start(request, *args, **kwargs)
        parser, queue = getattr(self, "_parser", None), getattr(self, "_reader", None)
        if parser is None or queue is None or handler._payload_parser is not parser:
            if early and handler._payload_parser is not None:
                handler._payload_parser.feed_data(early)
            return
        checked = MaskedFrames(parser, queue)
        handler._payload_parser = checked
        if early:
            checked.feed_data(early)  # as aiohttp does, its eof left to the reader's queue
