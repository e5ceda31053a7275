"""Responses API and Chat Completions streams: one pump, one spec per protocol.

Modules, one job each: ``spec`` (the :class:`StreamSpec` seam a protocol implements), ``relay``
(:class:`StreamRelay`, one stream's pump), ``publisher`` (where a stream's events go),
``responses`` and ``chat`` (each protocol: decoding, ids, last words, snapshots), ``named``
(snapshots of ``Runcast-Channel`` channels, which carry either protocol). :func:`reducer_factory`
gives each of their channel kinds its snapshot reducer.
"""

from __future__ import annotations

from gateway.hub import Reducer

from .chat import CHAT, ChatReducer
from .named import NamedReducer
from .relay import UPSTREAM_LOST_EVENT, StreamRelay, StreamStart
from .responses import RESPONSES, ResponseReducer, conversation_of
from .spec import Seen, StreamSpec

__all__ = [
    "CHAT",
    "RESPONSES",
    "UPSTREAM_LOST_EVENT",
    "Seen",
    "StreamRelay",
    "StreamSpec",
    "StreamStart",
    "conversation_of",
    "reducer_factory",
]


def reducer_factory(channel: str) -> Reducer | None:
    """The snapshot reducer of a protocol stream's channel; None for other channels."""
    kind = channel.partition(":")[0]
    if kind == "response":
        return ResponseReducer()
    if kind == "conversation":
        return ResponseReducer(latest=True)
    if kind == "chat":
        return ChatReducer()
    if kind == "channel":
        return NamedReducer()
    return None
