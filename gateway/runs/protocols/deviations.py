"""An upstream stream's events the pump does not take as they came: what it refuses, drops or
relays untyped, and the warnings it writes about them.

The pump (``relay.py``) tests for each case inline, a flag or two ids compared per event, and
calls here only when one occurs:

- An event that names another object than the one the stream's first event named (a Responses
  lifecycle or terminal event of another response), on the first stream as on a resumption:
  :func:`foreign` is the :class:`~parsers.errors.RemoteProtocolError` that cuts the stream before
  it. Nothing from that event on is relayed; the stream is then resumed, reconciled or lost as any
  cut one (``settling.py``). Not raised for chat: a chunk's ``id`` names no other object, since
  servers give every chunk an id of its own (ggml-org/llama.cpp#5876, BerriAI/litellm#1571,
  microsoft/foundry-local#144); a chat stream is the first chunk's ``id``'s.
- A resumption that skips a ``sequence_number`` (:func:`skipped`): what it left out would be lost
  unnoticed, so it counts as a cut too.
- An event after the stream's last word (``response.completed|failed|incomplete``): the response,
  its channel and its snapshot are over (the SDK's helper would fold a late delta into a response
  it already returned). It is dropped, neither published nor folded, and the stream ends as it
  would have; a ``[DONE]`` after it still ends the HTTP stream (LiteLLM, reference §5).
- An event that does not decode: relayed as received (STYLE: unknown events pass through).

:class:`Deviations` counts the dropped and the untyped events of one relay and writes a warning
for the 1st, 10th, 100th... of each (:func:`~gateway.logs.worth_a_line`): an upstream repeating
one without end writes a few lines, not one each.
"""

from __future__ import annotations

import logging

from gateway.logs import worth_a_line
from parsers.errors import RemoteProtocolError

__all__ = ["Deviations", "foreign", "skipped"]

log = logging.getLogger("runcast.relay")


def foreign(kind: str, object_id: str, about: str, *, resuming: bool) -> RemoteProtocolError:
    """The error cutting ``object_id``'s stream at an event about ``about``."""
    if resuming:
        return RemoteProtocolError(
            f"the upstream resumed {kind} {object_id} with the events of another one ({about})"
        )
    return RemoteProtocolError(
        f"the upstream's stream of {kind} {object_id} went on with the events of another one "
        f"({about})"
    )


def skipped(kind: str, object_id: str | None, last: int, cursor: int) -> RemoteProtocolError:
    """The error cutting a resumed stream whose events skip from ``last`` to ``cursor``."""
    return RemoteProtocolError(
        f"the upstream resumed {kind} {object_id} after sequence_number {last} with {cursor}"
    )


class Deviations:
    """One relay's count of the events it dropped or relayed untyped, and their warnings."""

    __slots__ = ("_kind", "_late", "_undecodable")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._undecodable = 0
        self._late = 0

    def undecodable(self, object_id: str | None) -> None:
        """An event that does not decode, relayed as received."""
        self._undecodable += 1
        if worth_a_line(self._undecodable):
            log.warning(
                "%s %s: relaying an undecodable event (%d so far)",
                self._kind,
                object_id,
                self._undecodable,
            )

    def after_end(self, object_id: str | None, name: str) -> None:
        """An event after the stream's last word, dropped."""
        self._late += 1
        if worth_a_line(self._late):
            log.warning(
                "%s %s: dropping an event the upstream sent after its terminal event "
                "(%s; %d so far)",
                self._kind,
                object_id,
                name or "message",
                self._late,
            )
