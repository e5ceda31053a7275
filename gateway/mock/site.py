"""Serving the simulator app on a socket, with the gateway's connection handlers.

aiohttp's own handler answers a request it cannot parse (a header line over 8190 bytes, a broken
request line) with a text/plain 400 that quotes the bytes, and logs an ERROR traceback for it.
:func:`start_site` serves through :class:`gateway.http.listener.Listener`, whose handlers give the
client the OpenAI-shaped JSON 400 (``malformed_request``) and the log one warning line, as
``runcast serve`` does; their request-head deadline and lingering are the gateway's too.

Not imported by ``gateway.mock`` or its ``app``: ``gateway.http`` imports them (the embedded
simulator), and importing it back from there would be circular.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_log import AccessLogger

from gateway.http.listener import Listener, ListenSite

__all__ = ["HEAD_TIMEOUT", "MAX_CONNECTIONS", "start_site"]

HEAD_TIMEOUT = 3630.0
"""Seconds a connection may wait for its next request's head: aiohttp's default
``keepalive_timeout``, which the simulator had before it served through a ``Listener``, so that
pooled idle connections of a load generator are kept as long as they were."""
MAX_CONNECTIONS = 1 << 30
"""The simulator has no ``--max-connections``: open connections are left uncapped, as before."""


async def start_site(runner: web.AppRunner, host: str, port: int, *, what: str = "") -> str:
    """Serve ``runner`` (set up) on ``host:port`` (0: any free port); returns the base URL
    without ``/v1``. :class:`~gateway.errors.ListenError` when the address cannot be listened on
    (``what`` names what it is for in its message)."""
    listener = Listener(
        max_connections=MAX_CONNECTIONS,
        header_timeout=HEAD_TIMEOUT,
        access_log_class=AccessLogger,
    )
    bound = await listener.bind(host, port, what=what)
    try:
        await ListenSite(runner, listener, bound).start()
    except BaseException:
        bound.close()
        raise
    bound_port = runner.addresses[-1][1]
    return f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
