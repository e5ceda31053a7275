"""The simulator's journal of creating requests, for tests and demos: ``GET /mock/requests``.

Every ``POST /v1/responses`` and ``POST /v1/chat/completions`` that reaches the simulator is
recorded as it came (before any validation), in order, the oldest dropped past ``MAX_ENTRIES``.
``GET /mock/requests`` answers ``{"object": "list", "total": n, "data": [{"path", "body"}...]}``:
``total`` counts every request since start, ``data`` holds the latest ones, ``body`` is the JSON
body (null when it was not JSON). ``?path=/v1/responses`` keeps one path's requests.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
from aiohttp import web

from parsers.errors import DECODE_ERRORS

__all__ = ["JOURNAL_KEY", "MAX_ENTRIES", "RequestJournal", "add_routes"]

MAX_ENTRIES = 1_000


class Entry(msgspec.Struct, frozen=True):
    path: str
    body: Any


class RequestJournal:
    """The latest creating requests (bounded)."""

    __slots__ = ("_entries", "total")

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[Entry] = deque(maxlen=max_entries)
        self.total = 0

    def record(self, path: str, raw: bytes) -> None:
        try:
            body = msgspec.json.decode(raw)
        except DECODE_ERRORS:  # the handler answers the caller about its body
            body = None
        self._entries.append(Entry(path, body))
        self.total += 1

    def entries(self, path: str | None = None) -> list[Entry]:
        return [e for e in self._entries if path is None or e.path == path]


JOURNAL_KEY = web.AppKey("runcast_mock_journal", RequestJournal)

_encode = msgspec.json.Encoder().encode


async def record(request: web.Request) -> None:
    """Record ``request`` (a creating POST) in the app's journal."""
    request.app[JOURNAL_KEY].record(request.path, await request.read())


async def list_requests(request: web.Request) -> web.Response:
    journal = request.app[JOURNAL_KEY]
    data = journal.entries(request.query.get("path"))
    body = {"object": "list", "total": journal.total, "data": data}
    return web.Response(body=_encode(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/mock/requests", list_requests)
