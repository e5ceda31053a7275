"""A literal, slow transcription of the WHATWG "interpreting an event stream" rules.

The tests compare ``parsers.sse.SSEDecoder`` against it. It decodes the whole stream first (UTF-8
with replacement, one leading BOM dropped), splits it on CRLF, CR and LF, and runs the spec's
steps line by line, with none of the decoder's byte-level shortcuts.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RAW_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

Event = tuple[str, str, str, "int | None"]  # event, data, id, retry


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    last_event_id: str = ""
    retry: int | None = None
    truncated: bool = False


def interpret(stream: bytes) -> Outcome:
    """What a conforming user agent dispatches for ``stream``, plus the decoder's extra state."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    *lines, tail = _LINE_BREAK.split(text)
    out = Outcome()
    data = event_type = ""
    block_retry: int | None = None
    pending = False
    for line in lines:
        if line == "":
            # "dispatch the event"
            if data != "":
                if data.endswith("\n"):
                    data = data[:-1]
                out.events.append((event_type or "message", data, out.last_event_id, block_retry))
            data = event_type = ""
            block_retry = None
            pending = False
            continue
        if line.startswith(":"):
            continue
        pending = True
        if ":" in line:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                out.last_event_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            # Past Python's int digit limit int() fails; the decoder ignores such values too.
            with contextlib.suppress(ValueError):
                out.retry = block_retry = int(value)
    out.truncated = tail != "" or pending
    return out


def bytes_needed(stream: bytes) -> int:
    """The smallest ``max_event_bytes`` that decodes ``stream`` without ``EventTooLarge``: the
    longest line (raw bytes, terminators excluded; the unterminated last one included) or the
    longest joined data of one block."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    *lines, tail = _RAW_LINE_BREAK.split(stream)
    needed = len(tail)
    data_len: int | None = None
    for line in lines:
        needed = max(needed, len(line))
        if not line:
            data_len = None
        elif line == b"data" or line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            data_len = len(value) if data_len is None else data_len + 1 + len(value)
            needed = max(needed, data_len)
    return needed
