"""``GET /metrics``: the app's Prometheus metrics (``gateway.metrics``) in the text format.

Served on the main listener, or with ``metrics_address`` on a listener of its own (typically an
address only the scraper reaches) that serves nothing else. Like ``/healthz`` it needs no
credentials: no label carries a run, thread or response id. :class:`AppSources` is what the
collector reads at scrape time: the relay registry, the broker and the subscriber connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.flags import host_port
from gateway.metrics import Metrics

from .hosts import HostCheck
from .listener import listen_failure
from .state import BROKER, CONNECTIONS, RELAYS, SETTINGS

__all__ = ["METRICS", "AppSources", "gc_pauses_ctx", "metrics_handler", "own_listener_ctx"]

METRICS = web.AppKey("runcast.metrics", Metrics)


class AppSources:
    """The statistics of a running app, read by the metrics collector at each scrape."""

    __slots__ = ("_app",)

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def runs_active(self) -> int:
        return self._app[RELAYS].statistics().active

    def subscribers(self) -> dict[str, int]:
        return self._app[CONNECTIONS].by_transport()

    def hub(self) -> object:
        return self._app[BROKER].statistics()


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.config_dict[METRICS]
    return web.Response(
        body=metrics.exposition(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


async def gc_pauses_ctx(app: web.Application) -> AsyncIterator[None]:
    """Time the cycle collector's pauses into the app's metrics for the app's lifetime."""
    pauses = app[METRICS].gc_pauses
    pauses.install()
    try:
        yield
    finally:
        pauses.remove()


async def own_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve ``/metrics`` at ``settings.metrics_address`` for the app's lifetime."""
    address = app[SETTINGS].metrics_address
    assert address is not None
    host, port = host_port(address)  # checked by the settings
    scrape = web.Application()
    HostCheck(host, app[SETTINGS].allowed_hosts).install(scrape)  # as the main listener
    scrape[METRICS] = app[METRICS]
    scrape.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(scrape, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise listen_failure(host, port, exc, what="metrics, --metrics-address") from exc
        yield
    finally:
        await runner.cleanup()
