"""Subscriber endpoints: run and thread channels over SSE or WebSocket, and run snapshots.

``GET /streams/runs/{run_id}`` and ``GET /streams/threads/{thread_id}`` stream a channel (SSE, or
WebSocket on an upgrade request) through the hub's transport helpers; ``Last-Event-ID``
(preferred) or ``?since=<seq>`` resumes, ``?snapshot=1`` starts with the snapshot. A run channel
exists once its run has passed through runcast (404 before); a thread channel may be subscribed
before its next run. ``GET /streams/runs/{run_id}/snapshot`` answers
``{"seq": n, "snapshot": {...}}``.

Authorisation (``auth.TokenAuthority``) comes first, so a 404 tells nothing to a caller without
a valid token. While the gateway drains (``drain.py``) new subscriptions get 503
``shutting_down``. A thread channel subscribed before its next run is pending and counts against the
caller's address (``--max-pending-per-client``), so anonymous callers in open mode cannot use up
the hub's pending channels between them.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from aiohttp import web

from gateway.errors import SubscriberError
from gateway.hub import serve_subscriber, since_from_request
from gateway.runs.channels import run_channel, thread_channel

from .errors import RequestError
from .state import BROKER, CONNECTIONS, DRAIN, RELAYS, TOKENS

__all__ = [
    "ID_PATTERN",
    "advertised",
    "client_key",
    "routable",
    "run_snapshot",
    "serve_channel",
    "stream_run",
    "stream_thread",
]

ID_PATTERN = r"[A-Za-z0-9_\-.]{1,128}"
"""Object ids as route patterns (OpenAI ids are ``prefix_`` + base62); anything else is a 404."""
_ID = re.compile(ID_PATTERN)

log = logging.getLogger("runcast.http")


def routable(value: str) -> bool:
    """Whether ``value`` is an id a subscriber URL can name (and so safe in a header): ``.``
    and ``..`` match the pattern but are dot-segments, which clients remove from a path."""
    return _ID.fullmatch(value) is not None and value not in (".", "..")


def advertised(kind: str, value: str) -> bool:
    """:func:`routable`, saying in the log when an upstream's ``kind`` id is not: its stream
    then has no channel a subscriber can name, and its creator gets no id or token for it."""
    if routable(value):
        return True
    log.warning(
        "the upstream's %s id %r (%d characters) is one no subscriber URL can name "
        "([A-Za-z0-9_.-], at most 128): its creator gets no id or token for it",
        kind,
        value[:64],
        len(value),
    )
    return False


_TRUE = frozenset({"1", "true", "yes"})


def _wants_snapshot(request: web.Request) -> bool:
    return request.query.get("snapshot", "").lower() in _TRUE


def client_key(request: web.BaseRequest) -> str | None:
    """The caller's address as the hub counts it: an IPv6 caller by its /64 (one subscriber line
    usually holds a whole /64), anything else by its address; None when unknown (a Unix socket).
    Behind a reverse proxy this is the proxy's address."""
    remote = request.remote
    if not remote:
        return None
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def serve_channel(request: web.Request, channel: str, *, create: bool) -> web.StreamResponse:
    """Serve ``channel`` to a subscriber whose token was checked (SSE or WebSocket, resume,
    snapshot); with ``create`` it may be subscribed before its first event."""
    since = since_from_request(request)
    request.app[DRAIN].check()
    with request.app[CONNECTIONS].track(channel, request):
        return await serve_subscriber(
            request,
            request.app[BROKER],
            channel,
            since=since,
            snapshot=_wants_snapshot(request),
            create=create,
            owner=client_key(request) if create else None,
        )


async def stream_run(request: web.Request) -> web.StreamResponse:
    run_id = request.match_info["run_id"]
    channel = run_channel(run_id)
    thread_id = await request.app[RELAYS].thread_of(run_id)
    request.app[TOKENS].authorize(
        request, channel, parent=None if thread_id is None else thread_channel(thread_id)
    )
    try:
        return await serve_channel(request, channel, create=False)
    except SubscriberError as exc:
        if exc.status == 404:
            raise RequestError(404, f"unknown run {run_id!r}", code="unknown_run") from None
        raise


async def stream_thread(request: web.Request) -> web.StreamResponse:
    channel = thread_channel(request.match_info["thread_id"])
    request.app[TOKENS].authorize(request, channel)
    return await serve_channel(request, channel, create=True)


async def run_snapshot(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    channel = run_channel(run_id)
    thread_id = await request.app[RELAYS].thread_of(run_id)
    request.app[TOKENS].authorize(
        request, channel, parent=None if thread_id is None else thread_channel(thread_id)
    )
    snapshot = await request.app[BROKER].snapshot(channel)
    if snapshot is None:
        raise RequestError(404, f"unknown run {run_id!r}", code="unknown_run")
    return web.Response(body=snapshot.to_json(), content_type="application/json")
