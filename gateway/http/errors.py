"""Uniform JSON errors for everything runcast itself answers.

Every 4xx/5xx that runcast produces (not the upstream's, which pass through unchanged) has the
OpenAI error shape ``{"error": {"message", "type", "param", "code"}}`` (spec §1.5), so SDKs map it
to their usual exception classes. :func:`error_middleware` turns :class:`RequestError`,
:class:`~gateway.errors.SubscriberError` and aiohttp's own ``HTTPException`` (unknown routes,
bad methods, bodies over ``client_max_size``) into that shape. A client that leaves while its
answer is written is logged once at debug level, nothing more (the access log shows 499).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from gateway.errors import (
    REDIS_UNREACHABLE,
    BrokerUnavailable,
    StreamTruncated,
    SubscriberError,
    UpstreamError,
    UpstreamNotAStream,
    UpstreamTimeout,
)
from parsers.errors import RemoteProtocolError

from .access import prepared

__all__ = [
    "RequestError",
    "error_body",
    "error_middleware",
    "error_response",
    "upstream_failure",
]

log = logging.getLogger("runcast.http")

_TYPE_BY_STATUS: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    417: "invalid_request_error",
    426: "invalid_request_error",
    429: "rate_limit_error",
}

_API_BY_KIND: Mapping[str, str] = {
    "run": "Assistants",
    "response": "OpenAI Responses",
    "chat": "OpenAI Chat Completions",
}

_CODE_BY_STATUS: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}

_HEADERS_KEPT = ("Allow", "Retry-After")


class _Error(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: _Error


_encoder = msgspec.json.Encoder()


class RequestError(Exception):
    """A request runcast refuses; becomes a JSON error response in :func:`error_middleware`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPE_BY_STATUS.get(status, "server_error")
        self.headers = headers


def upstream_failure(exc: UpstreamError | RemoteProtocolError) -> RequestError:
    """A call the upstream never answered properly: 504 for a timeout, else 502."""
    if isinstance(exc, UpstreamTimeout):
        # Past the connect, the request was sent: the upstream may be executing it (a
        # generation billed as any other), and the SDKs resend a 504 unless told not to. Only a
        # connect timeout proves nothing was sent (the upstream client's own retry rule).
        sent = exc.phase != "connect"
        return RequestError(
            504,
            f"upstream did not answer: {exc}",
            type="upstream_error",
            code="upstream_timeout",
            headers={"x-should-retry": "false"} if sent else None,
        )
    if isinstance(exc, UpstreamNotAStream):
        # Processed upstream: the SDKs retry a 502 unless told not to, and a retry would
        # generate (and bill) the answer again.
        return _not_to_retry(f"upstream failed: {exc}")
    if isinstance(exc, StreamTruncated) and exc.last_status is None:
        # A 200 whose body held no run event at all (an HTML error page from a proxy, an empty
        # body): "run None ended without 'done'" would not tell the caller what went wrong.
        # Not to be retried either: the upstream took the request (a 200), and straight from
        # the upstream the SDK would have ended the stream instead of sending it again.
        api = _API_BY_KIND.get(exc.kind, exc.kind)
        event = "run event" if exc.kind == "run" else "event"
        return _not_to_retry(
            f"upstream failed: its answer ended before any {event} (not an {api} event stream)"
        )
    return RequestError(
        502, f"upstream failed: {exc}", type="upstream_error", code="upstream_unavailable"
    )


def error_body(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str | None = None,
) -> bytes:
    """The OpenAI-shaped JSON error body (spec §1.5)."""
    body = _ErrorBody(
        error=_Error(
            message=message,
            type=type or _TYPE_BY_STATUS.get(status, "server_error"),
            param=param,
            code=code,
        )
    )
    return _encoder.encode(body)


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The OpenAI-shaped JSON error response (spec §1.5)."""
    return web.Response(
        status=status,
        body=error_body(status, message, code=code, param=param, type=type),
        content_type="application/json",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return error_response(
            exc.status,
            exc.message,
            code=exc.code,
            param=exc.param,
            type=exc.type,
            headers=exc.headers,
        )
    except SubscriberError as exc:
        return _subscriber_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in _HEADERS_KEPT if name in exc.headers}
        message = exc.reason
        if exc.status == 413:
            message = f"request body too large: {exc.text or exc.reason}"
        elif exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed for {request.path}"
        return error_response(
            exc.status, message, code=_CODE_BY_STATUS.get(exc.status), headers=kept
        )
    except (RedisError, BrokerUnavailable) as exc:
        # The cluster's Redis is away (Redis mode): a state the operator fixes, not a bug, and
        # the client may retry; the same answer as the hub's for a channel it cannot load.
        log.warning("%s %s: Redis unreachable: %s", request.method, request.path, exc)
        return _subscriber_error(SubscriberError(503, "broker_unavailable", REDIS_UNREACHABLE))
    except ConnectionResetError:
        # The client went away while its answer was written: not an error of anyone's. Any
        # response ends it quietly (aiohttp finds the connection gone and stops); re-raising
        # would have aiohttp log a 500 with a traceback.
        log.debug("client %s left during %s %s", request.remote, request.method, request.path)
        return web.Response(status=499, reason="Client Closed Request")
    except Exception:
        # CancelledError is a BaseException and passes; anything else is our bug, and the
        # caller still gets the uniform shape instead of aiohttp's text/plain 500.
        log.exception("unhandled error in %s %s", request.method, request.path)
        began = prepared(request)
        if began is not None:
            # The answer's head is out and its body under way: a second head would land inside
            # it. Cut the connection so the body ends in error (a clean end would pass for the
            # end of the stream); aiohttp then finds it closing and writes nothing more.
            if request.transport is not None:
                request.transport.abort()
            return began
        return error_response(500, "internal error in runcast", type="server_error")


def _subscriber_error(exc: SubscriberError) -> web.Response:
    # A 503 is a state that passes (Redis away, limits): the client may retry in a second.
    headers = {"Retry-After": "1"} if exc.status == 503 else {}
    if exc.headers:
        headers.update(exc.headers)
    return error_response(exc.status, str(exc), code=exc.code, headers=headers or None)


def _not_to_retry(message: str) -> RequestError:
    """A 502 the upstream answered 200 to: ``x-should-retry: false`` keeps the SDK from sending
    the request again."""
    return RequestError(
        502,
        message,
        type="upstream_error",
        code="upstream_unavailable",
        headers={"x-should-retry": "false"},
    )
