"""The viewer's JSON API: what the page may offer (``config``) and the recent channels.

``GET /viewer/api/channels`` lists the runs that passed through runcast most recently (newest
first, at most :data:`MAX_RUNS`) whose run channel the hub still holds, and their threads, with
each channel's last seq, subscriber count and whether it has ended; beside them the Responses and
Chat streams being relayed (``streams``: channel kind ``response`` or ``chat`` and the id). Who
may read it:

- when runcast has API keys (``--api-key``), only a caller presenting one (``Authorization:
  Bearer``); anonymous callers get 401 even where subscribing is open, since the listing hands
  out every run id at once;
- without keys, anyone when subscribing is open (the embedded default: anyone may follow any run
  whose id they know, and the listing adds only the ids), and nobody otherwise (403).

Where subscribers need tokens, each listed channel carries a short-lived subscribe token minted
for it, so the page never puts the runcast key in a URL.

``GET /viewer/api/config`` says which of these applies, and whether the page may start demo
runs: only with the embedded simulator as the upstream, where a run costs nothing and touches no
real account. The page then posts through runcast's own ``/v1`` proxy like any SDK.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from aiohttp import web

from gateway.http.auth import bearer
from gateway.http.errors import RequestError
from gateway.http.state import BROKER, CALLERS, RELAYS, SETTINGS, TOKENS
from gateway.mock.scenarios import SCENARIOS
from gateway.runs.channels import run_channel, thread_channel

__all__ = ["MAX_RUNS", "channels", "config"]

MAX_RUNS = 50
"""Runs listed at most: a page shows a screenful, and each costs a token when tokens are needed."""

_TOKEN_TTL = 600.0
"""Lifetime of the tokens the listing mints (the page lists again every few seconds), unless
``--token-ttl`` is shorter."""

Listing = Literal["open", "key", "off"]


class _Config(msgspec.Struct, frozen=True, kw_only=True):
    listing: Listing
    subscribe: Literal["open", "token"]
    demo: bool
    scenarios: list[str]
    automation: bool
    """runcast answers tool calls itself: the page must not submit outputs too."""


class _Run(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    thread_id: str | None
    last_seq: int
    subscribers: int
    ended: bool
    token: str | None


class _Thread(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: str
    last_seq: int
    subscribers: int
    ended: bool
    token: str | None


class _Stream(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["response", "chat"]
    id: str
    last_seq: int
    subscribers: int
    ended: bool
    token: str | None


class _Channels(msgspec.Struct, frozen=True, kw_only=True):
    runs: list[_Run]
    threads: list[_Thread]
    streams: list[_Stream]


_encoder = msgspec.json.Encoder()


def _json(body: msgspec.Struct) -> web.Response:
    return web.Response(
        body=_encoder.encode(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _listing(app: web.Application) -> Listing:
    if app[CALLERS].has_keys:
        return "key"
    return "open" if app[TOKENS].open_mode else "off"


async def config(request: web.Request) -> web.Response:
    app = request.app
    demo = app[SETTINGS].embedded
    return _json(
        _Config(
            listing=_listing(app),
            subscribe="open" if app[TOKENS].open_mode else "token",
            demo=demo,
            scenarios=sorted(SCENARIOS) if demo else [],
            automation=app[RELAYS].answers_actions,
        )
    )


def _authorize(request: web.Request) -> None:
    listing = _listing(request.app)
    if listing == "key" and not request.app[CALLERS].is_runcast_key(bearer(request)):
        raise RequestError(
            401,
            "listing channels needs a runcast API key (Authorization: Bearer)",
            code="invalid_api_key",
        )
    if listing == "off":
        raise RequestError(
            403,
            "listing channels needs runcast API keys (--api-key) when subscribers need tokens",
            code="no_api_keys",
        )


async def channels(request: web.Request) -> web.Response:
    _authorize(request)
    app = request.app
    broker, tokens = app[BROKER], app[TOKENS]

    def token(channel: str) -> str | None:
        return (
            None
            if tokens.open_mode
            else tokens.mint(channel, ttl=min(_TOKEN_TTL, tokens.ttl)).token
        )

    runs: list[_Run] = []
    threads: dict[str, _Thread] = {}
    for run_id, thread_id in await app[RELAYS].recent_runs(MAX_RUNS):
        stats = broker.channel_statistics(run_channel(run_id))
        if stats is None:
            continue
        runs.append(
            _Run(
                run_id=run_id,
                thread_id=thread_id,
                last_seq=stats.last_seq,
                subscribers=stats.subscribers,
                ended=stats.ended,
                token=token(stats.name),
            )
        )
        if thread_id is None or thread_id in threads:
            continue
        stats = broker.channel_statistics(thread_channel(thread_id))
        if stats is not None:
            threads[thread_id] = _Thread(
                thread_id=thread_id,
                last_seq=stats.last_seq,
                subscribers=stats.subscribers,
                ended=stats.ended,
                token=token(stats.name),
            )
    streams: list[_Stream] = []
    for name in reversed(app[RELAYS].live_streams()[-MAX_RUNS:]):
        kind, _, object_id = name.partition(":")
        stats = broker.channel_statistics(name)
        if stats is None or kind not in ("response", "chat"):
            continue
        streams.append(
            _Stream(
                kind="response" if kind == "response" else "chat",
                id=object_id,
                last_seq=stats.last_seq,
                subscribers=stats.subscribers,
                ended=stats.ended,
                token=token(name),
            )
        )
    return _json(_Channels(runs=runs, threads=list(threads.values()), streams=streams))
