"""Tool calls answered by an HTTP endpoint (``--tool-webhook NAME=URL``, ``'*=URL'`` for the rest).

Request
    ``POST <URL>`` with ``Content-Type: application/json`` and the body::

        {"run_id": "run_7Lm", "thread_id": "thread_9Qx", "tool_call_id": "call_C3",
         "name": "get_weather", "arguments": {"city": "Oslo"},
         "arguments_raw": "{\\"city\\":\\"Oslo\\"}"}

    ``arguments`` is the model's JSON text parsed (always an object), ``arguments_raw`` the text
    itself. Headers:

    - ``Runcast-Timestamp``: Unix time in whole seconds when this attempt was signed.
    - ``Runcast-Signature``: ``v1=<hex>`` where ``<hex>`` is the lowercase hex HMAC-SHA256,
      keyed with the webhook secret (UTF-8), of ``<Runcast-Timestamp> + "." + <raw body bytes>``.
      A receiver may see several comma-separated ``v1=`` entries in future (key rotation); one
      matching entry is enough.
    - ``Idempotency-Key``: ``<run_id>:<tool_call_id>``, identical on every retry of the same call.
    - ``Runcast-Attempt``: 1 for the first attempt, 2 for the first retry...

Verifying (what :func:`verify_signature` does): recompute the HMAC over the timestamp header, a
``.`` and the body exactly as received (before any JSON parsing), compare in constant time, and
reject timestamps further than a tolerance (default 300 s) from the receiver's clock, which bounds
replays.

Response
    Any 2xx: the body is the output. When the response is JSON (``application/json`` or
    ``*+json``) and is an object with an ``output`` key, that value is the output instead (a
    string as is, anything else JSON-encoded). Bodies over the configured limit fail the call.

Errors
    A failed call's error text (the tool output the model reads, the event every subscriber
    reads) names the tool and the kind of failure (refused, HTTP status and the answer's start),
    never the URL: its userinfo, query and, Slack style, its path carry credentials. Log lines
    name it as ``scheme://host:port/***``. An answer quoting the URL, its path, a query value or
    a userinfo part (a receiver refusing the token it was given) has them replaced by ``***``
    (values under ``gateway.logs.MIN_MASKED_CHARS`` excepted) in the error text and the log.

Retries
    Only connection errors (refused, reset, broken body) and 5xx answers are retried, at most
    ``retries`` times, sleeping ``backoff * 2**n`` before retry ``n + 1``. Other statuses fail the
    call at once. Redirects are not followed. The per-call timeout (``executor.py``) bounds all
    attempts together.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import ssl
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from yarl import URL

from gateway import tracing
from gateway.errors import ToolError, said
from gateway.logs import Redactor, RepeatedLines, credential_values, masked_url

from .handlers import ToolCall, encode_output

__all__ = [
    "ATTEMPT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookHandler",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "Runcast-Signature"
TIMESTAMP_HEADER = "Runcast-Timestamp"
ATTEMPT_HEADER = "Runcast-Attempt"
_SCHEME = "v1"
log = logging.getLogger("runcast.tools")
_SNIPPET = 200

# Errors after which the request may not have reached the receiver, or its answer was lost.
_RETRYABLE_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``Runcast-Signature`` value for ``body`` sent at ``timestamp``: ``v1=<hex>``."""
    message = f"{timestamp}.".encode() + body
    return f"{_SCHEME}={hmac.new(_key(secret), message, hashlib.sha256).hexdigest()}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    header: str,
    tolerance: float | None = 300.0,
    *,
    now: float | None = None,
) -> bool:
    """True when ``header`` (``Runcast-Signature``) signs ``body`` at ``timestamp``.

    ``timestamp`` is the ``Runcast-Timestamp`` header, ``body`` the raw request body. With a
    ``tolerance`` (seconds), a timestamp further than that from ``now`` (default: the current
    time) fails too; pass None to skip the freshness check.
    """
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - sent_at) > tolerance:
            return False
    expected = sign(secret, sent_at, body).encode()
    valid = False
    for entry in header.split(","):
        # Compare every entry: the loop's duration should not reveal which one matched.
        valid |= hmac.compare_digest(entry.strip().encode(), expected)
    return valid


class WebhookHandler:
    """POSTs a call to ``url`` and turns the response into its output.

    ``session`` belongs to the caller (one per gateway, opened and closed by ``ToolAutomation``).
    """

    __slots__ = (
        "_attempts",
        "_backoff",
        "_clock",
        "_max_output_bytes",
        "_retries",
        "_scrub",
        "_secret",
        "_session",
        "_shown",
        "url",
    )

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        secret: str | bytes | None,
        retries: int = 2,
        backoff: float = 0.25,
        max_output_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        # Error texts (tool outputs the model reads, events every subscriber reads) name the
        # tool, never the URL: its userinfo, query and, Slack style, its path carry credentials.
        # Log lines show scheme://host:port; an answer quoting the URL, its path, a query value
        # or the userinfo (a receiver echoing the token it refuses) is scrubbed.
        self._shown = masked_url(url, path=False)
        self._scrub = Redactor(_credentials(url))
        self._attempts = RepeatedLines()
        """Failed attempts' log lines per run: the 1st, 10th, 100th..."""
        self._session = session
        self._secret = secret
        self._retries = retries
        self._backoff = backoff
        self._max_output_bytes = max_output_bytes
        self._clock = clock

    async def __call__(self, call: ToolCall, /) -> str:
        body = orjson.dumps(
            {
                "run_id": call.run_id,
                "thread_id": call.thread_id,
                "tool_call_id": call.tool_call_id,
                "name": call.name,
                "arguments": call.arguments,
                "arguments_raw": call.arguments_raw,
            }
        )
        attempt = 1
        while True:
            try:
                output = await self._attempt(call, body, attempt)
            except _RetryableError as exc:
                self._log(call, attempt, exc)
                if attempt > self._retries:
                    raise ToolError(
                        call.name, call.tool_call_id, f"{exc} (gave up after {attempt} attempts)"
                    ) from exc
            except ToolError as exc:
                self._log(call, attempt, exc)
                raise
            else:
                return output
            await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            attempt += 1

    async def _attempt(self, call: ToolCall, body: bytes, attempt: int) -> str:
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{call.run_id}:{call.tool_call_id}",
            TIMESTAMP_HEADER: timestamp,
            ATTEMPT_HEADER: str(attempt),
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        tracing.inject(headers)
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                payload = await self._read(call, response)
                status = response.status
                content_type = response.content_type
        except _RETRYABLE_ERRORS as exc:
            raise _RetryableError(
                f"webhook of tool {call.name!r} unreachable: {_failure(exc)}"
            ) from exc
        except aiohttp.ClientResponseError as exc:  # its answer is not HTTP: never its bytes
            raise ToolError(
                call.name, call.tool_call_id, f"webhook of tool {call.name!r} failed: {said(exc)}"
            ) from exc
        if not 200 <= status < 300:
            answered = f"webhook of tool {call.name!r} answered HTTP {status}: "
            answered += self._scrub(_snippet(payload))
            if status >= 500:
                raise _RetryableError(answered)
            raise ToolError(call.name, call.tool_call_id, answered)
        return _output(call, payload, content_type)

    def _log(self, call: ToolCall, attempt: int, exc: Exception) -> None:
        # Only the log says where: the error text itself leaves the process.
        text = str(exc)
        if isinstance(exc, ToolError):
            text = text.removeprefix(f"tool {exc.name!r} ({exc.tool_call_id}): ")
        # Counted per run and error (its first 80 characters): each distinct one gets its line.
        if (n := self._attempts.count(f"{call.run_id}\0{text[:80]}")) is not None:
            more = "" if n == 1 else f" (the {n}th such failed attempt of this run's calls)"
            log.info(
                "webhook %s, attempt %d of %s%s: %s",
                self._shown,
                attempt,
                call.tool_call_id,
                more,
                text,
            )

    async def _read(self, call: ToolCall, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_output_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ToolError(call.name, call.tool_call_id, f"webhook response over {limit} bytes")
        buffer = bytearray()
        async for chunk in response.content.iter_any():
            buffer += chunk
            if len(buffer) > limit:
                raise ToolError(
                    call.name, call.tool_call_id, f"webhook response over {limit} bytes"
                )
        return bytes(buffer)


class _RetryableError(Exception):
    """An attempt failed in a way that may succeed when repeated (never leaves this module)."""


def _output(call: ToolCall, payload: bytes, content_type: str) -> str:
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict) and "output" in document:
            try:
                return encode_output(document["output"])
            except TypeError as exc:  # valid JSON nested past orjson's depth limit on output
                raise ToolError(
                    call.name,
                    call.tool_call_id,
                    f"webhook of tool {call.name!r} answered JSON whose output cannot be "
                    f"re-encoded: {exc.__cause__ or exc}",
                ) from exc
    return payload.decode("utf-8", errors="replace")


def _credentials(url: str) -> list[str]:
    """What of ``url`` an answer must not quote: the URL, its path (unless just ``/``), the
    query values that are credentials (:func:`~gateway.logs.credential_values`: named so,
    ``?token=``, ``?code=``, ``?sig=``, or of 16 characters or more)
    and the userinfo's parts, decoded (the :class:`Redactor` matches their encodings too, and
    leaves out values under ``MIN_MASKED_CHARS``, which would mask ordinary words), and as the
    ``Basic`` credentials they are sent as."""
    parts = urlsplit(url)
    found = [url]
    if parts.path.strip("/"):
        found.append(parts.path)
    found += credential_values(url)
    userinfo = [unquote(part) for part in (parts.username, parts.password) if part]
    found += userinfo
    if userinfo:
        # aiohttp sends the userinfo as `Authorization: Basic base64(user:password)`, which a
        # receiver may quote as it refuses it (RFC 7617 section 2).
        try:
            basic = aiohttp.BasicAuth.from_url(URL(url))
            header = None if basic is None else basic.encode()
        except ValueError:  # not latin-1: aiohttp cannot send it either
            header = None
        if header is not None:
            found += [header, header.removeprefix("Basic ")]
    return found


def _failure(exc: Exception) -> str:
    """``said(exc)`` without the address asyncio's connect error names ("Connect call failed
    ('10.0.0.7', 443)"), the webhook's: the system's words for its errno instead."""
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError):
        number = cause.errno or 0
        if number > 0:
            return f"{os.strerror(number)} ({type(exc).__name__})"
    return said(exc)


def _snippet(payload: bytes) -> str:
    text = payload[:_SNIPPET].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > _SNIPPET else "")
