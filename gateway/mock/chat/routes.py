"""aiohttp handler of the simulated Chat Completions API: ``POST /v1/chat/completions``."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.mock import journal
from gateway.mock.bodies import read_body
from gateway.mock.chat.requests import CreateChatRequest
from gateway.mock.chat.service import ChatService
from gateway.mock.errors import APIError
from gateway.mock.logstream import stream_log
from gateway.mock.objects import ENCODER

__all__ = ["CHAT_KEY", "add_routes"]

CHAT_KEY = web.AppKey("runcast_mock_chat", ChatService)

_CREATE = msgspec.json.Decoder(CreateChatRequest)


async def create_completion(request: web.Request) -> web.StreamResponse:
    await journal.record(request)
    req = await read_body(request, _CREATE)
    assert req is not None
    driver = request.app[CHAT_KEY].create(req, request.headers)
    if req.stream:
        return await stream_log(request, driver.log, 0, creator=True)
    await driver.log.wait_closed()
    if "error" in driver.completion:
        raise APIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            code="server_error",
        )
    return web.Response(body=ENCODER.encode(driver.completion), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", create_completion)
