"""The root of runcast's exception hierarchy and the errors raised by the parsers.

Every exception runcast raises on purpose derives from :class:`RuncastError`. Errors are split by
who is at fault, as in h11: the remote peer sent garbage (:class:`RemoteProtocolError`), or local
code misused an object (:class:`LocalProtocolError`). The gateway adds its own branches in
``gateway/errors.py``; the whole tree is::

    RuncastError
    ├── ProtocolError                  (parsers/errors.py)
    │   ├── RemoteProtocolError        the peer's bytes or JSON are invalid
    │   │   ├── EventTooLarge          one line/event exceeded the decoder's byte limit
    │   │   └── EventDecodeError       an event's JSON does not fit its schema
    │   └── LocalProtocolError         a decoder was used after close() or after an error
    ├── UpstreamError                  (gateway/errors.py)
    │   ├── UpstreamConnectionError    could not connect / connection lost before a response
    │   ├── UpstreamTimeout            connect, first-byte or idle timeout
    │   ├── UpstreamHTTPError          non-2xx answer; carries status and the error body
    │   └── StreamTruncated            EOF without `done` after a non-terminal run state
    ├── SubscriberError                bad subscribe request, token, or limit reached
    ├── ToolError                      a tool handler failed, timed out or got bad arguments
    ├── ConfigError                    invalid settings or CLI arguments
    └── ListenError                    cannot listen on --host/--port (in use, unresolvable)
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = [
    "DECODE_ERRORS",
    "EventDecodeError",
    "EventTooLarge",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RuncastError",
]


DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
"""What decoding JSON from outside with msgspec raises: ``DecodeError`` (``ValidationError``
included), or ``RecursionError`` for nesting deeper than Python's stack, since msgspec recurses
once per level (views that skip the nested value too). Catch both wherever such bytes are decoded."""


class RuncastError(Exception):
    """Base class of every error runcast raises on purpose."""


class ProtocolError(RuncastError):
    """A stream could not be interpreted."""


class RemoteProtocolError(ProtocolError):
    """The remote side sent bytes that break the protocol.

    ``offset`` is the byte offset in the stream where the problem was found, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class EventTooLarge(RemoteProtocolError):
    """A single line or event grew past the decoder's ``max_event_bytes`` limit.

    ``events`` holds the events that the failing ``feed()`` call had completed before the
    offending line, so a caller can still deliver everything that was accepted.
    """

    def __init__(
        self, limit: int, *, offset: int | None = None, events: Sequence[object] = ()
    ) -> None:
        super().__init__(
            f"SSE line/event exceeds the {limit}-byte limit at byte offset {offset}", offset=offset
        )
        self.limit = limit
        self.events = list(events)


class EventDecodeError(RemoteProtocolError):
    """An event's ``data`` is not valid JSON for the type its event name announces."""

    def __init__(
        self,
        event: str,
        reason: str,
        *,
        run_id: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = f" (run {run_id})" if run_id else ""
        super().__init__(f"cannot decode {event!r} event{where}: {reason}", offset=offset)
        self.event = event
        self.run_id = run_id
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """Local code misused a parser object (fed after close, or after a fatal error)."""
