"""Which ``Host`` a request may name: the defence against DNS rebinding.

Bound to a loopback address (the default, 127.0.0.1), runcast serves its own machine only, but
any web page that machine's user opens can have its own name resolved to 127.0.0.1 (DNS
rebinding) and then call runcast as a same-origin page: follow every stream in open mode, start
runs on the upstream key runcast holds. Such a request names the page's host in ``Host``. So,
bound to loopback, runcast answers only requests naming a loopback host (``localhost``,
``127.0.0.1``, ``[::1]``, any port), plus the names ``--allowed-host`` gives (a reverse proxy's
public name), or any with ``*``. Bound to any other address, every ``Host`` is answered unless
``--allowed-host`` is given. A request naming another host gets 403 ``host_not_allowed``; one
without ``Host`` (HTTP/1.0 tools; browsers always send it) is answered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from .errors import Handler, error_response

__all__ = ["HostCheck"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_MEMO_SIZE = 64
"""``Host`` values whose answer is remembered (clients send one or two; parsing an address takes
3 us a request); past it the memo starts over, and longer values than a DNS name are not kept."""
_MEMO_KEY_CHARS = 262
"""The longest ``Host`` kept: a DNS name (253), brackets, a colon and a port."""


class HostCheck:
    """The middleware of :mod:`gateway.http.hosts` for one app's settings."""

    __slots__ = ("_any", "_memo", "_names")

    def __init__(self, bound: str, allowed: Sequence[str]) -> None:
        names = {name.lower() for name in allowed}
        self._any = "*" in names or (not names and not _is_loopback(bound))
        self._names = frozenset(names - {"*"})
        self._memo: dict[str, bool] = {}

    def install(self, app: web.Application) -> None:
        if not self._any:
            app.middlewares.insert(0, self._middleware)

    def allows(self, host: str) -> bool:
        known = self._memo.get(host)
        if known is None:
            name = _hostname(host)
            known = name in self._names or _is_loopback(name)
            if len(host) <= _MEMO_KEY_CHARS:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[host] = known
        return known

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is None or self.allows(host):
            return await handler(request)
        return error_response(
            403,
            f"this runcast does not answer for host {host[:100]!r} (--allowed-host)",
            code="host_not_allowed",
        )


def _hostname(host: str) -> str:
    """``host`` without its port, lower case (``[::1]:8080`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def _is_loopback(name: str) -> bool:
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
