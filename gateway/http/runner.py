"""Running the gateway app on a socket: ``serve(settings)`` until SIGINT/SIGTERM.

The first signal starts the graceful drain (``drain.py``: new runs and subscriptions refused,
running runs given up to ``drain_timeout`` while the socket still listens); a second one cuts it
short. Then the server stops and every remaining stream is ended explicitly (``app.py``).

``handler_cancellation=True``: when a client goes away its handler is cancelled, so a vanished
creator detaches from its relay at once and a vanished subscriber is dropped without waiting for
the next heartbeat (its access log line is then written by ``access.py``). Before it
listens, ``serve`` raises the open-file limit to its hard limit, which the default connection
cap (``--max-connections auto``) then follows. Once it listens, the heap built so far is kept out
of the cycle collector's full collections and its young generation is collected less often
(``gateway.heap``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from gateway.heap import tune_collector
from gateway.settings import Settings
from gateway.workers import WORKER_ENV

from .access import AccessLogger
from .app import create_app
from .drain import drain
from .listener import (
    Listener,
    ListenSite,
    connection_cap,
    listen_backlog,
    raise_open_file_limit,
)
from .state import DRAIN, RELAYS, SETTINGS

__all__ = ["serve", "start_runner"]

log = logging.getLogger("runcast")


async def start_runner(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Set ``app`` up on ``host:port`` (0: any free port); returns the runner and base URL.

    The address is bound first, so a taken port or an unknown host raises
    :class:`~gateway.errors.ListenError` before the app (and its simulator) starts. Connections
    are capped and request heads bounded by :mod:`.listener`.
    """
    settings = app[SETTINGS]
    listener = Listener(
        max_connections=connection_cap(settings.max_connections),
        header_timeout=settings.header_timeout,
        access_log_class=AccessLogger,
        handler_args=None if settings.access_log else {"access_log": None},
    )
    bound = await listener.bind(
        host, port, backlog=listen_backlog(settings.backlog), reuse_port=settings.workers > 1
    )
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=settings.shutdown_timeout
    )
    try:
        await runner.setup()
    except BaseException:
        bound.close()
        raise
    try:
        await ListenSite(runner, listener, bound).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = bound_host if ":" not in bound_host else f"[{bound_host}]"
    return runner, f"http://{shown}:{bound_port}"


SAME_SIGNAL_WITHIN = 1.0
"""Seconds within which a second SIGINT/SIGTERM counts as the first one again."""


async def serve(settings: Settings, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    raise_open_file_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    first: list[float] = []

    def signalled() -> None:
        # A second signal cuts the drain short, but not the same one twice at once: a worker of
        # --workers gets its process group's signal and the supervisor's copy of it.
        now = loop.time()
        if first and now - first[0] < SAME_SIGNAL_WITHIN:
            return
        first[:] = first or [now]
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled)
    app = create_app(settings)
    runner, url = await start_runner(app, settings.host, settings.port)
    frozen = tune_collector()
    log.debug("cycle collector: %d startup objects frozen, young threshold raised", frozen)
    try:
        log.info("gateway listening on %s (OpenAI base_url %s/v1)", url, url)
        log.info(
            "subscribe at %s/streams/runs/{run_id} and %s/streams/threads/{thread_id} (%s)",
            url,
            url,
            "open mode, no token needed" if settings.open_subscribe else "subscribe token required",
        )
        if ready is not None:
            ready(url)
        await stop.wait()
        stop.clear()
        log.info("shutting down: draining")
        await drain(app[DRAIN], app[RELAYS], settings.drain_timeout, cut_short=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            if os.environ.get(WORKER_ENV) is not None:
                # A --workers worker gets its process group's signal and the supervisor's copy
                # of it: one coming after a short drain must not interrupt the rest (it is
                # going away; its supervisor kills it past the stop timeout).
                signal.signal(sig, signal.SIG_IGN)
        await runner.cleanup()
