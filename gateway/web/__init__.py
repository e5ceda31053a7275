"""The browser side of runcast: the live viewer page and ``runcast-client.js``.

``add_web_routes(app)`` registers, on the gateway app:

- ``GET /client/runcast-client.js``: the dependency-free ES module that follows a channel (SSE
  or WebSocket, snapshot, resume without gap or duplicate, text and tool-call accumulation),
  always served (it is public code and holds no data);
- unless ``Settings.viewer`` is off (``--no-viewer``): ``GET /`` (the viewer page) and its
  static files under ``/viewer/``, plus ``GET /viewer/api/config`` and
  ``GET /viewer/api/channels`` (the recent runs and threads, the live Responses/Chat streams,
  see :mod:`gateway.web.listing`).

Modules: ``assets`` (static files, packaged under ``static/``, served from memory with ETags),
``listing`` (the channel listing and who may read it).
"""

from __future__ import annotations

from aiohttp import web

from .assets import Assets
from .listing import channels, config

__all__ = ["add_web_routes"]


def add_web_routes(app: web.Application, *, viewer: bool) -> None:
    assets = Assets.load()
    app.router.add_get("/client/runcast-client.js", assets.handler("runcast-client.js"))
    if not viewer:
        return
    app.router.add_get("/", assets.handler("viewer.html"))
    for name in ("viewer.js", "viewer.css"):
        app.router.add_get(f"/viewer/{name}", assets.handler(name))
    app.router.add_get("/viewer/api/config", config)
    app.router.add_get("/viewer/api/channels", channels)
