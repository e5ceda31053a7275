"""aiohttp handlers of the simulated Assistants API under ``/v1`` (spec §1.2).

Handlers only translate: decode the body with a strict request Struct, call
:class:`~gateway.mock.service.MockService`, encode the answer (JSON, or an SSE stream whose bytes
the run engine writes). Run-returning answers carry ``openai-poll-after-ms`` so the SDK's
``create_and_poll`` polls quickly (spec §1.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.mock.bodies import read_body
from gateway.mock.errors import APIError
from gateway.mock.objects import ENCODER
from gateway.mock.pagination import list_params
from gateway.mock.requests import (
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    CreateThreadRequest,
    ModifyRunRequest,
    SubmitToolOutputsRequest,
)
from gateway.mock.service import MockService
from gateway.mock.sink import StreamSink

__all__ = ["SERVICE_KEY", "add_routes"]

SERVICE_KEY = web.AppKey("runcast_mock_service", MockService)

T = TypeVar("T")

_DECODERS: Mapping[type[Any], msgspec.json.Decoder[Any]] = MappingProxyType(
    {
        cls: msgspec.json.Decoder(cls)
        for cls in (
            CreateAssistantRequest,
            CreateMessageRequest,
            CreateRunRequest,
            CreateThreadAndRunRequest,
            CreateThreadRequest,
            ModifyRunRequest,
            SubmitToolOutputsRequest,
        )
    }
)


async def _body(request: web.Request, cls: type[T], *, optional: bool = False) -> T | None:
    value: T | None = await read_body(request, _DECODERS[cls], optional=optional)
    return value


async def _required(request: web.Request, cls: type[T]) -> T:
    value = await _body(request, cls)
    assert value is not None
    return value


def _json(obj: Any, *, poll_after_ms: int | None = None) -> web.Response:
    response = web.Response(body=ENCODER.encode(obj), content_type="application/json")
    if poll_after_ms is not None:
        response.headers["openai-poll-after-ms"] = str(poll_after_ms)
    return response


async def _stream(sink: StreamSink) -> web.StreamResponse:
    response = await sink.wait()
    if not response.prepared:
        raise APIError(
            500,
            "The run ended before its stream started.",
            type="server_error",
            code="server_error",
        )
    return response


def _svc(request: web.Request) -> MockService:
    return request.app[SERVICE_KEY]


def _poll(request: web.Request) -> int:
    return _svc(request).settings.poll_after_ms


# -- assistants --------------------------------------------------------------------------------


async def create_assistant(request: web.Request) -> web.StreamResponse:
    req = await _required(request, CreateAssistantRequest)
    return _json(_svc(request).create_assistant(req))


async def get_assistant(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).assistant(request.match_info["assistant_id"]))


async def list_assistants(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).list_assistants(list_params(request.query)))


# -- threads and messages ----------------------------------------------------------------------


async def create_thread(request: web.Request) -> web.StreamResponse:
    req = await _body(request, CreateThreadRequest, optional=True)
    return _json(_svc(request).create_thread(req).thread)


async def get_thread(request: web.Request) -> web.StreamResponse:
    return _json(_svc(request).thread(request.match_info["thread_id"]).thread)


async def create_message(request: web.Request) -> web.StreamResponse:
    req = await _required(request, CreateMessageRequest)
    return _json(_svc(request).add_message(request.match_info["thread_id"], req))


async def get_message(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json(_svc(request).message(info["thread_id"], info["message_id"]))


async def list_messages(request: web.Request) -> web.StreamResponse:
    page = _svc(request).list_messages(
        request.match_info["thread_id"], list_params(request.query), request.query.get("run_id")
    )
    return _json(page)


# -- runs --------------------------------------------------------------------------------------


async def create_run(request: web.Request) -> web.StreamResponse:
    req = await _required(request, CreateRunRequest)
    sink = StreamSink(request) if req.stream else None
    record = _svc(request).create_run(request.match_info["thread_id"], req, sink)
    if sink is not None:
        return await _stream(sink)
    return _json(record.run, poll_after_ms=_poll(request))


async def create_thread_and_run(request: web.Request) -> web.StreamResponse:
    req = await _required(request, CreateThreadAndRunRequest)
    sink = StreamSink(request) if req.stream else None
    record = _svc(request).create_thread_and_run(req, sink)
    if sink is not None:
        return await _stream(sink)
    return _json(record.run, poll_after_ms=_poll(request))


async def get_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    record = _svc(request).run(info["thread_id"], info["run_id"])
    return _json(record.run, poll_after_ms=_poll(request))


async def modify_run(request: web.Request) -> web.StreamResponse:
    req = await _required(request, ModifyRunRequest)
    info = request.match_info
    run = _svc(request).modify_run(info["thread_id"], info["run_id"], req)
    return _json(run, poll_after_ms=_poll(request))


async def list_runs(request: web.Request) -> web.StreamResponse:
    page = _svc(request).list_runs(request.match_info["thread_id"], list_params(request.query))
    return _json(page)


async def submit_tool_outputs(request: web.Request) -> web.StreamResponse:
    req = await _required(request, SubmitToolOutputsRequest)
    sink = StreamSink(request) if req.stream else None
    info = request.match_info
    run = _svc(request).submit_tool_outputs(info["thread_id"], info["run_id"], req, sink)
    if sink is not None:
        return await _stream(sink)
    return _json(run, poll_after_ms=_poll(request))


async def cancel_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    run = _svc(request).cancel(info["thread_id"], info["run_id"])
    return _json(run, poll_after_ms=_poll(request))


async def list_steps(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    page = _svc(request).list_steps(info["thread_id"], info["run_id"], list_params(request.query))
    return _json(page)


async def get_step(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json(_svc(request).step(info["thread_id"], info["run_id"], info["step_id"]))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/assistants", create_assistant)
    r.add_get("/v1/assistants", list_assistants)
    r.add_get("/v1/assistants/{assistant_id}", get_assistant)
    r.add_post("/v1/threads", create_thread)
    r.add_post("/v1/threads/runs", create_thread_and_run)
    r.add_get("/v1/threads/{thread_id}", get_thread)
    r.add_post("/v1/threads/{thread_id}/messages", create_message)
    r.add_get("/v1/threads/{thread_id}/messages", list_messages)
    r.add_get("/v1/threads/{thread_id}/messages/{message_id}", get_message)
    r.add_post("/v1/threads/{thread_id}/runs", create_run)
    r.add_get("/v1/threads/{thread_id}/runs", list_runs)
    r.add_get("/v1/threads/{thread_id}/runs/{run_id}", get_run)
    r.add_post("/v1/threads/{thread_id}/runs/{run_id}", modify_run)
    r.add_post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs)
    r.add_post("/v1/threads/{thread_id}/runs/{run_id}/cancel", cancel_run)
    r.add_get("/v1/threads/{thread_id}/runs/{run_id}/steps", list_steps)
    r.add_get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}", get_step)
