"""Request checks and error rendering shared by every route of the simulator.

In order: an ``Authorization: Bearer <anything>`` header is required (401 otherwise), then, for
known Assistants routes (``/v1/assistants``, ``/v1/threads``), ``OpenAI-Beta: assistants=v2``
(400 ``invalid_beta``, spec §1.1); the Responses and Chat routes need no beta header. Every error,
ours (:class:`~gateway.mock.errors.APIError`) or aiohttp's (unknown URL, wrong method, body too
large), leaves as OpenAI's JSON error body (spec §1.5). A client that leaves before its body
is read whole, or while its answer is written, is one debug line (as in ``gateway.http.errors``):
re-raised, aiohttp would log it as an ERROR with a traceback and try to answer a 500.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.mock.errors import APIError, ErrorBody
from gateway.mock.objects import ENCODER

__all__ = ["api_middleware", "error_response"]

log = logging.getLogger(__name__)

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_ASSISTANTS_PATHS = ("/v1/assistants", "/v1/threads")
_INVALID_BETA = (
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by "
    "setting the header 'OpenAI-Beta: assistants=v2'."
)


def error_response(exc: APIError) -> web.Response:
    response = web.Response(
        status=exc.status,
        body=ENCODER.encode(ErrorBody(error=exc.error)),
        content_type="application/json",
    )
    response.headers.update(exc.headers)
    return response


def _check(request: web.Request) -> None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, _MISSING_KEY)
    if request.match_info.http_exception is not None:
        return
    if not request.path.startswith(_ASSISTANTS_PATHS):
        return
    betas = {part.strip() for part in request.headers.get("OpenAI-Beta", "").split(",")}
    if "assistants=v2" not in betas:
        raise APIError(400, _INVALID_BETA, code="invalid_beta")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _check(request)
        return await handler(request)
    except APIError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"Invalid URL ({request.method} {request.path})"
        else:
            message = exc.reason
        return error_response(APIError(exc.status, message, headers=_allow(exc)))
    except ConnectionResetError:
        # Its own doing, not the simulator's: any response ends it quietly (aiohttp finds the
        # connection gone and writes nothing; the access log shows the 499).
        log.debug("client %s left during %s %s", request.remote, request.method, request.path)
        return web.Response(status=499, reason="Client Closed Request")


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
