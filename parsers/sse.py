"""Sans-I/O decoder and encoder for ``text/event-stream`` (Server-Sent Events).

Owns the bytes -> lines -> events layer: :class:`SSEDecoder` implements the WHATWG HTML
"interpreting an event stream" rules (html.spec.whatwg.org/multipage/server-sent-events.html,
section 9.2.6) and :func:`encode_sse` writes frames the decoder reads back.

Theory of operation
-------------------
``feed()`` works on bytes, never on ``str``, and keeps Python-level work per event small:

* Lines end at CR, LF or CRLF and nowhere else (never ``splitlines`` rules). A chunk holding CR is
  first rewritten with LF line breaks (``_sse_bytes.to_lf``); a CR ending a chunk leaves a flag so
  an LF opening the next one is not a second line break. Chunks without CR skip that step.
* One leading UTF-8 BOM is dropped at stream start, also when its bytes arrive in pieces.
* Bytes after the last line break wait in ``_rest``; chunks without LF are only collected and
  joined once a line ends, so a long line in small chunks costs linear, not quadratic, time.
* While no field of the current block has been seen, a block of exactly
  ``PREFIX VALUE LF LF`` (PREFIX being ``event: NAME LF data: `` or ``data: ``) is one event and
  needs no field parsing. A run of such blocks with the same PREFIX is cut apart by
  ``bytes.split(LF LF PREFIX)`` over a span that doubles while the run lasts (so a feed of many
  short runs stays linear), and the events are built by ``map`` without a Python loop. A
  read of one span at most that opens inside such a run (the usual read of a stream of deltas)
  is split whole, with no span copied and no first event taken apart; when it ends inside the
  run's next block, or in a partial line after it, no line is read one at a time. When the
  previous read left the run's unfinished block pending, a read of 1-8 KiB is split on its own
  and the pending value put in front of its first piece (``_continue_run``), so the pending
  bytes and the read are never copied into one buffer. An
  unfinished block of that shape at the end of a chunk is left in ``_rest`` whole (its lines
  change nothing observable before its blank line) and read again with the next chunk.
* A change of event name looks its block shape up in a small cache (prefix, decoded name and
  separator). Every other line goes through the general field rules one at a time; all paths
  yield the same events.
* UTF-8 is checked on the data only: once for all the values of a run, per value otherwise, and
  ``isascii`` spares the decode in the usual case. Every line break is ASCII and an ASCII byte
  always ends an invalid sequence, so replacing per line gives exactly the characters the spec's
  whole-stream UTF-8 decode would. Event names and ids are decoded with replacement.

End of input is explicit (``close()``): the spec discards an unterminated event, and ``truncated``
records that something was discarded. After ``close()`` or an error the decoder refuses input.
"""

from __future__ import annotations

from itertools import repeat
from typing import NoReturn

from parsers._sse_bytes import is_utf8, raw_index, to_lf, valid_utf8
from parsers._sse_encode import encode_sse
from parsers._sse_event import ServerSentEvent
from parsers.errors import EventTooLarge, LocalProtocolError, RemoteProtocolError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "ServerSentEvent", "encode_sse"]

# The largest legitimate Assistants events are whole objects: a Run carries `instructions` (up to
# 256,000 characters, so up to ~1 MiB of UTF-8 and more once JSON-escaped) plus up to 128 tool
# schemas; a completed Message or RunStep can hold a long answer, code-interpreter output or
# file-search result contents. 16 MiB leaves an order of magnitude of headroom over that while
# still bounding what one broken or hostile upstream can make a stream buffer.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
# Event names are decoded once per distinct value; bounded so a peer sending ever-new names
# cannot grow it.
_NAME_CACHE_SIZE = 128
# Bytes split at first when a run of same-prefix blocks starts: above a 4 KiB read plus what an
# earlier read left pending, so such reads need one split; doubled while the run goes on.
_RUN_SPAN = 8192
# Buffers from this size up (to the span) that open with a run are split whole: below it a
# read holds a few blocks at most, and the test would cost more than it saves.
_WHOLE_MIN = 1024


class _Shapes(dict[bytes, tuple[bytes, str, bytes]]):
    """Fast-path block shapes by their prefix ``event: NAME LF data: ``: the prefix, NAME
    decoded ("message" when empty) and the separator ``LF LF`` + prefix. Bounded like the
    names."""

    def __missing__(self, prefix: bytes) -> tuple[bytes, str, bytes]:
        shape = (prefix, prefix[7:-7].decode("utf-8", "replace") or "message", b"\n\n" + prefix)
        if len(self) < _NAME_CACHE_SIZE:
            self[prefix] = shape
        return shape


class _Overflow(Exception):
    """Raised inside ``_scan`` with the buffer position of the line that broke the limit."""

    def __init__(self, pos: int, events: list[ServerSentEvent]) -> None:
        super().__init__(pos)
        self.pos = pos
        self.events = events


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder: ``feed()`` bytes, get events; ``close()`` at EOF.

    ``max_event_bytes`` bounds both one line and one event's joined data (bytes, excluding line
    terminators); going past it raises :class:`~parsers.errors.EventTooLarge` carrying the stream
    offset of the line that did it. Public state: ``last_event_id`` (the last event ID buffer),
    ``retry`` (the latest valid ``retry`` value, in milliseconds), ``offset`` (bytes fed so far)
    and ``truncated`` (set by ``close()`` when a partial line or an undispatched block was
    discarded).
    """

    __slots__ = (
        "_block",
        "_bom",
        "_closed",
        "_cut",
        "_error",
        "_fast",
        "_head",
        "_limit",
        "_line_start",
        "_more",
        "_more_len",
        "_names",
        "_rest",
        "_run",
        "_shapes",
        "_skip_lf",
        "last_event_id",
        "offset",
        "retry",
        "truncated",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self._limit = max_event_bytes
        self.last_event_id = ""
        self.retry: int | None = None
        self.truncated = False
        self.offset = 0
        self._closed = False
        self._error: str | None = None
        """Why an earlier feed failed: its message, never the exception (whose traceback holds
        the feed's frame, the buffer that overflowed and this decoder: a cycle that only the
        cycle collector would free, 16 MiB or more each)."""
        # Stream-start bytes held while they may still turn out to be a BOM; None once decided.
        self._bom: bytes | None = b""
        self._skip_lf = False
        self._head = True  # _bom or _skip_lf needs looking at before the next chunk
        # Bytes not interpreted yet: _rest, a partial line or an unfinished block of fast-path
        # shape that is re-read whole once its blank line arrives, then _more, chunks without LF
        # received since (joined once, when a line ends). _line_start is the stream offset of
        # their first byte.
        self._rest = b""
        self._more: list[bytes] = []
        self._more_len = 0
        self._line_start = 0
        self._cut = 0
        # Set while _rest is exactly an unfinished block of the current fast shape (its value
        # without LF so far) and nothing else is pending: the next read may continue the run.
        self._run = False
        # The current block once a field line was seen since the last blank line: event type
        # buffer, data lines, their joined size, and the block's `retry` value.
        self._block: tuple[str, list[bytes] | None, int, int | None] | None = None
        # Fast-path block shape: `event: NAME LF data: ` (or just `data: `), NAME decoded, and the
        # separator `LF LF` + prefix between consecutive blocks of that shape.
        self._fast = (b"data: ", "message", b"\n\ndata: ")
        self._names: dict[bytes, str] = {}
        self._shapes = _Shapes()

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume the next bytes of the stream; return the events completed by them."""
        if _WHOLE_MIN <= len(chunk) < _RUN_SPAN and self._run and type(chunk) is bytes:
            continued = self._continue_run(chunk)
            if continued is not None:
                return continued
        if self._closed:
            self._refuse()
        self._run = False
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if not chunk:
            return []
        self.offset += len(chunk)
        if self._head:
            chunk = self._consume_head(chunk)
            if not chunk:
                return []
        raw = chunk
        if 13 in chunk:
            self._head = self._skip_lf = chunk[-1] == 13
            chunk = to_lf(chunk)
        if 10 not in chunk:
            if not (self._rest or self._more):
                self._line_start = self.offset - len(raw)
            self._more.append(chunk)
            self._more_len += len(chunk)
            if len(self._rest) + self._more_len > self._limit:
                self._overflow()
            return []
        rest = self._rest
        if self._more:
            rest = b"".join([rest, *self._more])
            self._more.clear()
            self._more_len = 0
        held = len(rest)
        buf = rest + chunk if held else chunk
        failure = None
        try:
            # Deferring is only done when offsets within the chunk are unchanged (no CR removed).
            events = self._scan(buf, raw is chunk)
        except _Overflow as exc:
            # Events completed earlier in the same chunk ride on the error, so none is lost.
            failure = EventTooLarge(
                self._limit,
                offset=self._offset_of(exc.pos, held, raw, raw is not chunk),
                events=exc.events,
            )
        if failure is not None:
            # Raised outside the handler: its context would be the overflow, whose traceback
            # holds the scan's frame and the buffer.
            self._fail(failure)
        cut = self._cut
        self._rest = rest = buf[cut:]
        if rest:
            if cut >= held:
                self._line_start = self.offset - len(rest)
            if len(rest) > self._limit:  # never a deferred block: those are kept within the limit
                # The events this chunk completed before the line ride on the error.
                self._fail(EventTooLarge(self._limit, offset=self._line_start, events=events))
        return events

    def _continue_run(self, chunk: bytes) -> list[ServerSentEvent] | None:
        """The usual read of a stream of deltas: ``_rest`` holds the run's unfinished block and
        ``chunk`` completes it and more blocks of the same shape. Splits ``chunk`` alone (no
        copy of pending + chunk) and returns the events, or None, having changed nothing, when
        the chunk is not that."""
        prefix, prefix_name, separator = self._fast
        pieces = chunk.split(separator)
        if len(pieces) < 2 or 13 in chunk:
            return None
        value = pieces.pop()
        pieces[0] = self._rest[len(prefix) :] + pieces[0]
        joined = b" ".join(pieces)
        if 10 in joined or not is_utf8(joined):
            return None
        events = list(map(ServerSentEvent, repeat(prefix_name), pieces, repeat(self.last_event_id)))
        if 10 not in value:
            # The read ends inside the run's next block: that block is the new _rest.
            self.offset += len(chunk)
            self._rest = rest = prefix + value
            self._line_start = self.offset - len(rest)
            return events
        # The run ends inside this read: what follows its last block goes the general way, as
        # the read's last bytes.
        tail = len(prefix) + len(value)
        self.offset += len(chunk) - tail
        self._rest = b""
        self._run = False
        events += self.feed(chunk[-tail:])
        return events

    def close(self) -> list[ServerSentEvent]:
        """Signal end of input. Never dispatches: an unterminated event is discarded (WHATWG)
        and ``truncated`` says whether anything was pending. Idempotent."""
        self._run = False
        if not self._closed:
            self._closed = True
            self.truncated = bool(self._rest or self._more or self._bom or self._block)
        self._rest = b""
        self._more.clear()
        self._block = None
        return []

    def _refuse(self) -> NoReturn:
        if self._error is not None:
            raise LocalProtocolError(f"SSE decoder failed earlier ({self._error}); feed refused")
        raise LocalProtocolError("feed() after close()")

    def _fail(self, exc: RemoteProtocolError) -> NoReturn:
        self._run = False
        self._closed = True
        self._error = str(exc)
        self.truncated = True
        self._rest = b""
        self._more.clear()
        self._block = None
        try:
            raise exc
        finally:
            # Else this frame, which its traceback holds, would hold it: a cycle that keeps the
            # callers' frames, and the buffer that overflowed, until the cycle collector runs.
            del exc

    def _offset_of(self, pos: int, held: int, raw: bytes, normalized: bool) -> int:
        """Stream offset of ``pos`` in a buffer made of ``held`` pending bytes + chunk ``raw``
        (CR-normalised when ``normalized``)."""
        if pos < held:
            return self._line_start + pos
        pos -= held
        return self.offset - len(raw) + (raw_index(raw, pos) if normalized else pos)

    def _overflow(self) -> None:
        """The pending bytes grew past the limit: fail unless they start with a deferred block
        whose lines, once interpreted, leave a partial line within the limit."""
        buf = b"".join([self._rest, *self._more])
        self._more.clear()
        self._more_len = 0
        if 10 in buf:
            try:
                self._scan(buf, False)  # a deferred block has no blank line: nothing dispatches
            except _Overflow:
                self._fail(EventTooLarge(self._limit, offset=self._line_start))
            buf = buf[self._cut :]
            self._line_start = self.offset - len(buf)
        self._rest = buf
        if len(buf) > self._limit:
            self._fail(EventTooLarge(self._limit, offset=self._line_start))

    def _consume_head(self, chunk: bytes) -> bytes:
        """Drop one stream-start BOM, or an LF completing a CRLF split across chunks."""
        if self._bom is not None:
            chunk = self._bom + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._bom = chunk
                return b""
            self._bom = None
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        elif self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        self._head = False
        return chunk

    def _name(self, raw: bytes) -> str:
        names = self._names
        name = names.get(raw)
        if name is None:
            name = raw.decode("utf-8", "replace")
            if len(names) < _NAME_CACHE_SIZE:
                names[raw] = name
        return name

    def _scan(self, buf: bytes, defer: bool) -> list[ServerSentEvent]:
        """Interpret the complete lines of ``buf``; leave in ``_cut`` where interpretation stopped.

        With ``defer``, an unfinished block of fast-path shape at the end is left uninterpreted
        (its lines change nothing observable before its blank line) so it is read whole later.
        """
        events: list[ServerSentEvent] = []
        last = buf.rfind(b"\n")
        fast = self._fast
        prefix, prefix_name, separator = fast
        prefix_len = len(prefix)
        pos = 0
        if (
            _WHOLE_MIN <= last < _RUN_SPAN
            and self._block is None
            and buf.startswith(prefix)
            and len(buf) <= self._limit
        ):
            # The usual read inside a long run: a buffer within one span opens with a block of
            # the current shape followed by another. Split the buffer itself (no copy of a span,
            # no first event handled apart); the last piece is whatever follows the run.
            nl = buf.find(b"\n", prefix_len)
            if (
                nl > 0
                and last - nl > 2 * nl
                and buf[nl + 1] == 10
                and buf.startswith(prefix, nl + 2)
            ):
                pieces = buf.split(separator)
                value = pieces.pop()
                pieces[0] = pieces[0][prefix_len:]
                joined = b" ".join(pieces)
                if 10 not in joined and is_utf8(joined):
                    events += map(
                        ServerSentEvent, repeat(prefix_name), pieces, repeat(self.last_event_id)
                    )
                    pos = len(buf) - len(value) - prefix_len
                    # The read ends inside the run's next block (deferred whole), or after it
                    # in a partial line: done without the line loop.
                    nl = value.find(b"\n")
                    if nl < 0 and defer:
                        self._cut = pos
                        self._run = True
                        return events
                    if nl >= 0 and pos + prefix_len + nl + 1 == last:
                        value = value[:nl]
                        if not value.isascii():
                            value = valid_utf8(value)
                        events.append(ServerSentEvent(prefix_name, value, self.last_event_id))
                        self._cut = last + 1
                        return events
        append = events.append
        find = buf.find
        startswith = buf.startswith
        limit = self._limit
        cut = last + 1
        small = len(buf) <= limit  # then no line in it can be over the limit
        defer = defer and small
        last_event_id = self.last_event_id
        # Block state is only kept in locals while a block is open (a field line seen).
        block = self._block
        in_block = block is not None
        if block is not None:
            event, data, data_len, retry = block
        span = _RUN_SPAN
        while pos <= last:
            if not in_block:
                if startswith(prefix, pos):
                    # A block that is exactly `prefix VALUE LF LF`.
                    start = pos + prefix_len
                    nl = find(b"\n", start)
                    if nl < 0:  # the prefix runs into the partial line
                        if defer:
                            cut = pos
                            self._run = True
                            break
                    elif nl < last and buf[nl + 1] == 10 and nl - pos <= limit:
                        value = buf[start:nl]
                        if not value.isascii():
                            value = valid_utf8(value)
                        append(ServerSentEvent(prefix_name, value, last_event_id))
                        # Room for at least two more such blocks: split the rest at once.
                        if last - nl > 2 * (nl - pos) and startswith(prefix, nl + 2):
                            pos = nl + 2
                            # A run of such blocks: splitting on `LF LF prefix` yields the
                            # values; the first piece holding LF (always the last) ends it.
                            start = pos + prefix_len
                            # Split at most `span` bytes: the bytes after a block that ends
                            # the run are split for nothing, so the span starts small and
                            # doubles while runs go on, keeping one large feed linear.
                            end = start + span if cut - start > span else cut
                            pieces = buf[start:end].split(separator)
                            value = pieces.pop()
                            if not pieces:
                                continue
                            # One check of all the values: no LF (each is exactly one data
                            # line) and valid UTF-8 (joined by an ASCII byte, so a sequence
                            # cut over two values cannot pass for one character).
                            joined = b" ".join(pieces)
                            if small and 10 not in joined and is_utf8(joined):
                                count = len(pieces)
                                events += map(
                                    ServerSentEvent,
                                    repeat(prefix_name),
                                    pieces,
                                    repeat(last_event_id),
                                )
                            else:
                                count = 0
                                for piece in pieces:
                                    if 10 in piece or len(piece) + prefix_len > limit:
                                        break
                                    if not piece.isascii():
                                        piece = valid_utf8(piece)
                                    append(ServerSentEvent(prefix_name, piece, last_event_id))
                                    count += 1
                            if count == len(pieces):
                                pos = end - len(value) - prefix_len
                                span *= 2
                            else:
                                span = _RUN_SPAN
                                pos = start + sum(map(len, pieces[:count]))
                                pos += count * len(separator) - prefix_len
                        else:
                            pos = nl + 2
                        continue
                    elif nl == last and defer:  # waiting for the blank line
                        cut = pos
                        break
                elif startswith(b"event: ", pos):
                    eol = find(b"\n", pos)
                    if startswith(b"data: ", eol + 1):
                        prefix, prefix_name, separator = self._shapes[buf[pos : eol + 7]]
                        prefix_len = eol + 7 - pos
                        continue
                    if defer and eol == last and b"data: ".startswith(buf[cut:]):
                        cut = pos
                        break
                elif startswith(b"data: ", pos):
                    prefix = b"data: "
                    prefix_len = 6
                    prefix_name = "message"
                    separator = b"\n\ndata: "
                    continue
            # General rules, one line at a time.
            nl = find(b"\n", pos)
            if nl == pos:
                # Blank line: dispatch. The spec appends LF per data line and drops the last
                # one, i.e. joins the lines with LF; no data line means nothing to dispatch.
                if in_block:
                    if data is not None:
                        append(
                            ServerSentEvent(
                                event or "message",
                                data[0] if len(data) == 1 else b"\n".join(data),
                                last_event_id,
                                retry,
                            )
                        )
                    in_block = False
                pos += 1
                continue
            if nl - pos > limit:
                raise _Overflow(pos, events)
            if buf[pos] == 58:  # a line starting with ':' is a comment
                pos = nl + 1
                continue
            if not in_block:
                in_block = True
                event = ""
                data = None
                data_len = 0
                retry = None
            colon = find(b":", pos, nl)
            if colon < 0:
                name = buf[pos:nl]
                value = b""
            else:
                name = buf[pos:colon]
                colon += 1
                if colon < nl and buf[colon] == 32:
                    colon += 1
                value = buf[colon:nl]
            if name == b"data":
                size = len(value)  # the limit counts wire bytes, before any replacement
                if not value.isascii():
                    value = valid_utf8(value)
                if data is None:
                    data = [value]
                    data_len = size
                else:
                    data.append(value)
                    data_len += size + 1
                    if data_len > limit:
                        raise _Overflow(pos, events)
            elif name == b"event":
                event = self._name(value)
            elif name == b"id":
                if 0 not in value:
                    last_event_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                try:
                    retry = int(value)
                except ValueError:  # beyond int's digit limit: not a usable delay
                    pass
                else:
                    self.retry = retry
            pos = nl + 1
        self._cut = cut
        self._block = (event, data, data_len, retry) if in_block else None
        self.last_event_id = last_event_id
        if prefix is not fast[0]:
            self._fast = (prefix, prefix_name, separator)
        return events
