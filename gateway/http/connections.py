"""Live subscriber connections per channel, so they can be counted and dropped.

:meth:`SubscriberConnections.drop` aborts the TCP connections of a channel's subscribers as a
network failure would (buffered bytes are lost, nothing is flushed). Operators use it to shed
load; tests use it to prove that clients resume (``Last-Event-ID``) without a gap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

__all__ = ["SubscriberConnections"]


class SubscriberConnections:
    """Requests currently streaming a channel, grouped by channel name."""

    __slots__ = ("_by_channel", "_by_transport")

    def __init__(self) -> None:
        # Keyed by id(): requests are not hashable; the context manager keeps each one alive.
        self._by_channel: dict[str, dict[int, web.BaseRequest]] = {}
        self._by_transport = {"sse": 0, "websocket": 0}

    @contextlib.contextmanager
    def track(self, channel: str, request: web.BaseRequest) -> Iterator[None]:
        group = self._by_channel.setdefault(channel, {})
        group[id(request)] = request
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        transport = "websocket" if upgrade else "sse"
        self._by_transport[transport] += 1
        try:
            yield
        finally:
            self._by_transport[transport] -= 1
            group.pop(id(request), None)
            if not group:
                self._by_channel.pop(channel, None)

    def by_transport(self) -> dict[str, int]:
        """Connections streaming now, by transport (``sse``, ``websocket``)."""
        return dict(self._by_transport)

    def count(self, channel: str | None = None) -> int:
        if channel is not None:
            return len(self._by_channel.get(channel, ()))
        return sum(len(group) for group in self._by_channel.values())

    def drop(self, channel: str) -> int:
        """Abort every connection streaming ``channel``; returns how many were dropped."""
        dropped = 0
        for request in list(self._by_channel.get(channel, {}).values()):
            transport = request.transport
            if transport is not None and not transport.is_closing():
                transport.abort()
                dropped += 1
        return dropped
