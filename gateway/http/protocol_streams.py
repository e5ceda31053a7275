"""Subscriber endpoints of the Responses and Chat Completions channels, and their snapshots.

``GET /streams/responses/{response_id}`` (one response), ``GET /streams/conversations/{id}``
(every response of a conversation, in order), ``GET /streams/chat/{completion_id}`` (one chat
stream) and ``GET /streams/channels/{name}`` (what creating requests named with
``Runcast-Channel``), each with ``.../snapshot``. Transports, resume (``Last-Event-ID`` or
``?since=``), ``?snapshot=1`` and token rules are the run channels' (``streams.py``): a token
opens exactly its channel, and a conversation's token also opens the channels of the responses
that named it (noted as they pass through runcast). A response or chat channel exists once its stream has passed through
runcast (404 before); a conversation or named channel may be subscribed before its first stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import SubscriberError
from gateway.runs.channels import (
    chat_channel,
    conversation_channel,
    named_channel,
    response_channel,
)

from .errors import RequestError
from .state import BROKER, RELAYS, TOKENS
from .streams import ID_PATTERN, serve_channel

__all__ = ["add_protocol_stream_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_KINDS: tuple[tuple[str, str, Callable[[str], str], bool], ...] = (
    # (path segment, what the id names, channel name, subscribable before it exists)
    ("responses", "response", response_channel, False),
    ("conversations", "conversation", conversation_channel, True),
    ("chat", "chat completion", chat_channel, False),
    ("channels", "channel", named_channel, True),
)


def _unknown(what: str, key: str) -> RequestError:
    code = "unknown_" + what.replace(" ", "_")
    return RequestError(404, f"unknown {what} {key!r}", code=code)


async def _parent(request: web.Request, what: str, key: str) -> str | None:
    """The channel whose token also opens this one: a response's conversation."""
    if what != "response" or request.app[TOKENS].open_mode:
        return None
    conversation = await request.app[RELAYS].conversation_of(key)
    return None if conversation is None else conversation_channel(conversation)


def _endpoints(
    what: str, channel_of: Callable[[str], str], create: bool
) -> tuple[Handler, Handler]:
    async def stream(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        channel = channel_of(key)
        request.app[TOKENS].authorize(request, channel, parent=await _parent(request, what, key))
        try:
            return await serve_channel(request, channel, create=create)
        except SubscriberError as exc:
            if exc.status == 404:
                raise _unknown(what, key) from None
            raise

    async def snapshot(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        channel = channel_of(key)
        request.app[TOKENS].authorize(request, channel, parent=await _parent(request, what, key))
        found = await request.app[BROKER].snapshot(channel)
        # seq 0: the channel exists for a subscriber waiting on it, but nothing was streamed yet.
        if found is None or found.seq == 0:
            raise _unknown(what, key)
        return web.Response(body=found.to_json(), content_type="application/json")

    return stream, snapshot


def add_protocol_stream_routes(app: web.Application) -> None:
    """Add the four channel kinds' stream and snapshot routes to ``app``."""
    for segment, what, channel_of, create in _KINDS:
        stream, snapshot = _endpoints(what, channel_of, create)
        app.router.add_get(f"/streams/{segment}/{{key:{ID_PATTERN}}}", stream)
        app.router.add_get(f"/streams/{segment}/{{key:{ID_PATTERN}}}/snapshot", snapshot)
