"""Responses API and Chat Completions streams: one pump, one spec per protocol.

Modules, one job each: ``spec`` (the :class:`StreamSpec` seam a protocol implements), ``relay``
(:class:`StreamRelay`, one stream's pump and its state), ``settling`` (a stream cut before its
last word: resumed, reconciled or lost), ``deviations`` (what the pump refuses, drops or
relays untyped of an upstream stream), ``adoption`` (a dead owner's stream taken up), ``lost``
(the ``runcast.upstream_lost`` event), ``ownership`` (what a relay needs to own its stream across
nodes), ``publisher`` (where a stream's events go),
``responses`` and ``chat`` (each protocol: decoding, ids, last words, snapshots),
``responses_recovery`` (polling a stored response cut mid-stream to its end), ``named``
(snapshots of ``Runcast-Channel`` channels, which carry either protocol), ``toolchain``
(continuing a stream that ends with function calls, with ``responses_chain`` and ``chat_chain``
each protocol's part). :func:`reducer_factory` gives each of their channel kinds its snapshot
reducer; :func:`tool_round` each protocol's part of a tool chain.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.hub import Reducer

from .chat import CHAT, ChatReducer
from .chat_chain import ChatRound
from .named import NamedReducer
from .relay import UPSTREAM_LOST_EVENT, StreamRelay, StreamStart
from .responses import RESPONSES, ResponseReducer, conversation_of
from .responses_chain import ResponsesRound
from .responses_recovery import ResponseRecovery, stored
from .spec import Reconcile, Reconciled, Seen, StreamSpec
from .toolchain import CREATOR_STREAM_HEADER, ChainRound, ToolChain

__all__ = [
    "CHAT",
    "CREATOR_STREAM_HEADER",
    "RESPONSES",
    "UPSTREAM_LOST_EVENT",
    "Reconcile",
    "Reconciled",
    "ResponseRecovery",
    "Seen",
    "StreamRelay",
    "StreamSpec",
    "StreamStart",
    "ToolChain",
    "conversation_of",
    "reducer_factory",
    "stored",
    "tool_round",
]


def reducer_factory(channel: str) -> Reducer | None:
    """The snapshot reducer of a protocol stream's channel; None for other channels."""
    kind = channel.partition(":")[0]
    # latest: a tool chain continues a response's (a completion's) channel with its follow-ups,
    # and the snapshot is the chain's last stream.
    if kind in ("response", "conversation"):
        return ResponseReducer(latest=True)
    if kind == "chat":
        return ChatReducer(latest=True)
    if kind == "channel":
        return NamedReducer()
    return None


def tool_round(kind: str, body: bytes) -> ChainRound | None:
    """The tool-chain part of a ``kind`` stream created by ``body``; None when the body is not
    a JSON object (the upstream will say what is wrong with it)."""
    try:
        request: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(request, dict):
        return None
    return ResponsesRound(request) if kind == "response" else ChatRound(request)
