"""aiohttp handlers of the simulated Responses API under ``/v1``.

``POST /responses`` (streamed or not, ``background``), ``GET /responses/{id}`` (the object, or
with ``stream=true`` the stored events after ``starting_after`` then live), ``POST
/responses/{id}/cancel``, ``DELETE /responses/{id}``, and the conversation calls a ``conversation``
needs (``POST /conversations``, ``GET /conversations/{id}``, ``GET /conversations/{id}/items``).
A stream is one reader of the response's event log (``logstream.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from gateway.mock import journal
from gateway.mock.bodies import decimal, read_body
from gateway.mock.errors import APIError, quoted
from gateway.mock.logstream import stream_log
from gateway.mock.objects import ENCODER
from gateway.mock.responses.requests import CreateConversationRequest, CreateResponseRequest
from gateway.mock.responses.service import ResponsesService
from gateway.mock.scenarios import SCENARIOS

__all__ = ["RESPONSES_KEY", "add_routes"]

RESPONSES_KEY = web.AppKey("runcast_mock_responses", ResponsesService)

_CREATE = msgspec.json.Decoder(CreateResponseRequest)
_CONVERSATION = msgspec.json.Decoder(CreateConversationRequest)
_TRUE = frozenset({"true", "1"})


def _json(obj: Any) -> web.Response:
    return web.Response(body=ENCODER.encode(obj), content_type="application/json")


def _svc(request: web.Request) -> ResponsesService:
    return request.app[RESPONSES_KEY]


async def create_response(request: web.Request) -> web.StreamResponse:
    await journal.record(request)
    req = await read_body(request, _CREATE)
    assert req is not None
    record = _svc(request).create(req, request.headers)
    if req.stream:
        return await stream_log(request, record.log, 0, creator=True)
    if not record.response.background:
        await record.log.wait_closed()
        if SCENARIOS[record.scenario].ending == "error":
            raise APIError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
                code="server_error",
            )
    return _json(record.response)


async def get_response(request: web.Request) -> web.StreamResponse:
    response_id = request.match_info["response_id"]
    query = request.query
    if query.get("stream", "").lower() not in _TRUE:
        return _json(_svc(request).get(response_id).response)
    raw = query.get("starting_after")
    starting_after = None if raw is None else decimal(raw)
    if raw is not None and starting_after is None:
        raise APIError(400, f"Invalid starting_after {quoted(raw)}.", param="starting_after")
    log, cursor = _svc(request).stream_from(response_id, starting_after)
    return await stream_log(request, log, cursor, creator=False)


async def cancel_response(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).cancel(request.match_info["response_id"]))


async def delete_response(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).delete(request.match_info["response_id"]))


async def create_conversation(request: web.Request) -> web.StreamResponse:
    req = await read_body(request, _CONVERSATION, optional=True)
    return _json(_svc(request).create_conversation(req))


async def get_conversation(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).conversation(request.match_info["conversation_id"]).conversation)


async def list_conversation_items(request: web.Request) -> web.StreamResponse:
    items = _svc(request).conversation(request.match_info["conversation_id"]).items
    return _json(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/responses", create_response)
    r.add_get("/v1/responses/{response_id}", get_response)
    r.add_delete("/v1/responses/{response_id}", delete_response)
    r.add_post("/v1/responses/{response_id}/cancel", cancel_response)
    r.add_post("/v1/conversations", create_conversation)
    r.add_get("/v1/conversations/{conversation_id}", get_conversation)
    r.add_get("/v1/conversations/{conversation_id}/items", list_conversation_items)
