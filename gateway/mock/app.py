"""``create_app``: the simulated Assistants, Responses and Chat Completions APIs as one aiohttp app.

The app owns one :class:`~gateway.mock.service.MockService` (store + engine) and the Responses and
Chat services, which start their tasks on the same engine, and the journal of creating requests
(``journal.py``, ``GET /mock/requests``). Driver tasks are
cancelled at shutdown, before aiohttp waits for open handlers, so streaming handlers end at once,
and again at cleanup as a safety net (``cleanup_ctx``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.mock import chat, journal, responses
from gateway.mock.middleware import api_middleware
from gateway.mock.routes import SERVICE_KEY, add_routes
from gateway.mock.service import MockService
from gateway.mock.settings import MockSettings

__all__ = ["SERVICE_KEY", "create_app"]


def create_app(settings: MockSettings | None = None) -> web.Application:
    """A ready-to-run simulator app serving under ``/v1``."""
    app = web.Application(middlewares=[api_middleware])
    service = MockService(settings or MockSettings())
    app[SERVICE_KEY] = service
    app[responses.RESPONSES_KEY] = responses.ResponsesService(service.settings, service.engine)
    app[chat.CHAT_KEY] = chat.ChatService(service.settings, service.engine)
    app[journal.JOURNAL_KEY] = journal.RequestJournal()
    add_routes(app)
    journal.add_routes(app)
    responses.add_routes(app)
    chat.add_routes(app)
    app.on_response_prepare.append(_request_id)
    app.on_shutdown.append(_stop_runs)
    app.cleanup_ctx.append(_engine_ctx)
    return app


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("x-request-id", "req_" + secrets.token_hex(16))


async def _stop_runs(app: web.Application) -> None:
    await app[SERVICE_KEY].engine.aclose()


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await app[SERVICE_KEY].engine.aclose()
