"""``runcast.upstream_lost``: what a Responses or Chat stream's channels and creator are told when
runcast cannot relay the stream to its end.

Its data is ``{"error": {"message", "type": "runcast_upstream_lost", "param", "code":
"upstream_lost"}, "reason", "kind", "id", "cursor"}``, and ``status`` when the object was found
ended without a last word of its own (a reconciliation found it cancelled). ``reason`` is the
failure's (``recovery.failure_reason``), :data:`OWNER_LOST` after a takeover or
:data:`OWNER_CHANGED` for a creator whose stream another node took; the ``error`` member makes
the openai SDK raise. (A run's counterpart is ``runcast.upstream_error``: ``recovery.py``.)
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.hub import HubEvent

__all__ = ["OWNER_CHANGED", "OWNER_LOST", "UPSTREAM_LOST_EVENT", "ended_by_loss", "lost_event"]

UPSTREAM_LOST_EVENT = "runcast.upstream_lost"
OWNER_LOST = "owner_lost"
"""The ``reason`` of what a node taking a dead owner's stream over publishes."""
OWNER_CHANGED = "owner_changed"
"""``reason`` of the ``runcast.upstream_lost`` a creator gets when another node took its stream."""


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str = "runcast_upstream_lost"
    param: None = None
    code: str = "upstream_lost"


class _Lost(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    error: _ErrorBody
    reason: str
    kind: str
    id: str | None
    cursor: int | None
    status: str | None = None
    """The object's terminal status, when a reconciliation found one with no event (cancelled)."""


_encode = msgspec.json.Encoder().encode


def lost_event(
    message: str,
    *,
    reason: str,
    kind: str,
    object_id: str | None,
    cursor: int | None,
    status: str | None = None,
) -> HubEvent:
    """The ``runcast.upstream_lost`` event (``message``: its ``error.message``, scrubbed)."""
    body = _Lost(
        error=_ErrorBody(message=message),
        reason=reason,
        kind=kind,
        id=object_id,
        cursor=cursor,
        status=status,
    )
    return HubEvent(UPSTREAM_LOST_EVENT, _encode(body))


class _LostView(msgspec.Struct):
    error: dict[str, Any] | None = None
    status: str | None = None


def ended_by_loss(snapshot: dict[str, Any], lost: HubEvent) -> dict[str, Any]:
    """A Responses or Chat snapshot as it stands once ``lost`` ended its stream: ``done``, and
    the loss as its ``error`` unless the stream's own error is there (a late joiner must not read
    a stream runcast gave up on as one still generating); a response found ended with no event
    of its own (cancelled) takes that status."""
    snapshot["done"] = True
    try:
        view = msgspec.json.decode(lost.data, type=_LostView)
    except msgspec.DecodeError:
        return snapshot
    if snapshot.get("error") is None:
        snapshot["error"] = view.error
    response = snapshot.get("response")
    if view.status is not None and isinstance(response, dict):
        response["status"] = view.status
    return snapshot
