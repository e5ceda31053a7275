"""What a decoded stream event means to the gateway, whatever the upstream protocol: signals.

Each protocol package turns its typed events into these (``parsers.assistants.signals``), so
the code that reads an upstream stream, relays it, recovers it and folds snapshots asks one
question of each event instead of matching the protocol's event types itself. ``RunT`` is the
protocol's run object (the thing an action handler answers).
"""

from __future__ import annotations

from typing import Generic, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "Empty",
    "GroupSeen",
    "ItemFinal",
    "RunSeen",
    "Signal",
    "StreamEnd",
    "StreamError",
]

RunT = TypeVar("RunT")


class RunSeen(msgspec.Struct, Generic[RunT], frozen=True, kw_only=True):
    """The run (or response) in its current state."""

    run_id: str
    group_id: str | None
    """Its thread (or conversation), when the event says."""
    status: str
    run: RunT
    """The protocol's run object, handed to an action handler when ``status`` asks for one."""


class GroupSeen(msgspec.Struct, frozen=True, kw_only=True):
    """The thread (or conversation) the run belongs to was created or named."""

    group_id: str


class ItemFinal(msgspec.Struct, frozen=True, kw_only=True):
    """An output item (message or step) reached its final state; a recovery need not resend it."""

    kind: Literal["message", "step"]
    id: str


class StreamError(msgspec.Struct, frozen=True):
    """The upstream reported an error in the stream: ending the stream after it is clean."""


class StreamEnd(msgspec.Struct, frozen=True):
    """The upstream's end-of-stream marker (Assistants: ``done``)."""


class Empty(msgspec.Struct, frozen=True):
    """An event with nothing to relay (no name the protocol knows, no data)."""


Signal: TypeAlias = RunSeen[RunT] | GroupSeen | ItemFinal | StreamError | StreamEnd | Empty
