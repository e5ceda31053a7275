"""``POST /tokens``: subscribe tokens for backends, authenticated with a runcast API key.

Body (strict JSON; unknown members are a 400): exactly one of ``channel`` (``run:<id>``,
``thread:<id>``, ``response:<id>``, ``conversation:<id>``, ``chat:<id>`` or ``channel:<name>``), ``run_id`` or ``thread_id``, and optionally ``ttl`` in seconds (at most the
configured ``token_ttl``). Answer: ``{"token": "...", "channel": "...", "expires_at": <unix>}``.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from gateway.runs.channels import run_channel, thread_channel
from parsers.errors import DECODE_ERRORS

from .errors import RequestError
from .state import CALLERS, SETTINGS, TOKENS
from .streams import ID_PATTERN, routable

__all__ = ["mint_token"]

_CHANNEL = re.compile(rf"(run|thread|response|conversation|chat|channel):{ID_PATTERN}")


class _TokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: str | None = None
    run_id: str | None = None
    thread_id: str | None = None
    ttl: float | None = None


_decoder = msgspec.json.Decoder(_TokenRequest)
_encoder = msgspec.json.Encoder()


def _channel(body: _TokenRequest) -> str:
    given = [v for v in (body.channel, body.run_id, body.thread_id) if v is not None]
    if len(given) != 1:
        raise RequestError(400, "give exactly one of channel, run_id or thread_id", param="channel")
    if body.run_id is not None:
        channel = run_channel(body.run_id)
    elif body.thread_id is not None:
        channel = thread_channel(body.thread_id)
    else:
        channel = given[0]
    # A dot-segment id matches the pattern but names no channel a stream can have (routable).
    if not _CHANNEL.fullmatch(channel) or not routable(channel.partition(":")[2]):
        raise RequestError(400, f"invalid channel {channel[:140]!r}", param="channel")
    return channel


async def mint_token(request: web.Request) -> web.Response:
    request.app[CALLERS].require_key(request)
    raw = await request.read()
    try:
        body = _decoder.decode(raw)
    except DECODE_ERRORS as exc:
        raise RequestError(400, f"invalid token request: {exc}", code="invalid_body") from None
    channel = _channel(body)
    max_ttl = request.app[SETTINGS].token_ttl
    if body.ttl is not None and not 0 < body.ttl <= max_ttl:
        raise RequestError(400, f"ttl must be in (0, {max_ttl:g}] seconds", param="ttl")
    minted = request.app[TOKENS].mint(channel, ttl=body.ttl)
    return web.Response(body=_encoder.encode(minted), content_type="application/json")
