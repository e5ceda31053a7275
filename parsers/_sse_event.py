"""``ServerSentEvent``: what ``parsers.sse.SSEDecoder`` hands out, one per dispatched event."""

from __future__ import annotations

import msgspec

__all__ = ["ServerSentEvent"]


class ServerSentEvent(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event (WHATWG "dispatch the event").

    ``data_bytes`` is the data buffer as UTF-8 bytes: the wire bytes themselves when they were valid
    UTF-8, so the payload can be decoded or relayed without a str round trip. ``id`` is the last
    event ID buffer at dispatch, which persists across events. ``retry`` is the value of a valid
    ``retry`` field inside this event's own block, else None. A Struct with ``gc=False`` and
    positional fields: it is built once per event on the hot path and holds only atoms, so it can
    never be in a reference cycle.
    """

    event: str = "message"
    data_bytes: bytes = b""
    id: str = ""
    retry: int | None = None

    @property
    def data(self) -> str:
        """The data as text. The decoder only produces valid UTF-8; an event built by hand from
        arbitrary bytes gets U+FFFD replacements instead of an exception."""
        return self.data_bytes.decode("utf-8", "replace")
