"""Which ``/v1`` requests start a stream that runcast relays and fans out.

The three Assistants run-starting calls (spec §1.2): ``POST /threads/{thread_id}/runs``,
``POST /threads/runs`` and ``POST /threads/{thread_id}/runs/{run_id}/submit_tool_outputs``; and
``POST /responses`` and ``POST /chat/completions``. Each only when the JSON body says
``"stream": true`` (spec §1.4: the body, not a header, decides). Everything else is a plain
passthrough. The body of a streamed call must be one the relay can read
(``gateway.upstream.body.json_object``): runcast refuses any other with a 400 ``invalid_body``,
before a relay starts or anything goes upstream.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote

import msgspec

from gateway.upstream.body import MAX_NESTING, json_object

from .errors import RequestError

__all__ = ["StreamedCall", "asks_for_stream", "streamed_call"]

CallKind = Literal["run", "thread_and_run", "submit", "response", "chat"]

_SEGMENT = r"([^/]+)"
_PATTERNS: tuple[tuple[re.Pattern[str], CallKind], ...] = (
    (re.compile(rf"^/v1/threads/{_SEGMENT}/runs/?$"), "run"),
    (re.compile(r"^/v1/threads/runs/?$"), "thread_and_run"),
    (re.compile(rf"^/v1/threads/{_SEGMENT}/runs/{_SEGMENT}/submit_tool_outputs/?$"), "submit"),
    (re.compile(r"^/v1/responses/?$"), "response"),
    (re.compile(r"^/v1/chat/completions/?$"), "chat"),
)


class StreamedCall(msgspec.Struct, frozen=True, kw_only=True):
    kind: CallKind
    thread_id: str | None = None
    run_id: str | None = None


class _StreamFlag(msgspec.Struct):
    # A view of the request body: every other member is ignored (and sent upstream unchanged).
    stream: bool | None = None


_flag_decoder = msgspec.json.Decoder(_StreamFlag)


def streamed_call(method: str, raw_path: str, body: bytes) -> StreamedCall | None:
    """The streamed call ``method raw_path`` with ``body`` makes, or None for a passthrough.

    A body that is not a JSON object with a boolean ``stream`` is passed through: the upstream
    answers it with its own 400 error. Raises RequestError for a streamed call's body the relay
    cannot read.
    """
    if method != "POST" or not body:
        return None
    for pattern, kind in _PATTERNS:
        match = pattern.match(raw_path)
        if match is None:
            continue
        if not _streamed(body):
            return None
        ids = [unquote(group) for group in match.groups()]
        if kind == "run":
            return StreamedCall(kind=kind, thread_id=ids[0])
        if kind == "submit":
            return StreamedCall(kind=kind, thread_id=ids[0], run_id=ids[1])
        return StreamedCall(kind=kind)
    return None


def asks_for_stream(body: bytes) -> bool:
    """Whether a passthrough call's ``body`` asks for a stream (``"stream": true``), as the
    legacy ``/v1/completions`` does: its answer's head comes at once, not after a generation."""
    if not body:
        return False
    try:
        return _flag_decoder.decode(body).stream is True
    except (msgspec.DecodeError, RecursionError):
        return False


def _streamed(body: bytes) -> bool:
    """Whether ``body`` asks for a stream; RequestError for one the relay could not read."""
    try:
        if _flag_decoder.decode(body).stream is not True:
            return False
    except msgspec.DecodeError:
        return False
    except RecursionError:
        # msgspec recurses once per nesting level on Python's stack (about 1000 frames): far
        # past MAX_NESTING.
        message = f"request body nests arrays and objects deeper than {MAX_NESTING} levels"
        raise RequestError(400, message, code="invalid_body") from None
    try:
        # The view skipped every other member, with fewer checks than the relay's parser makes.
        json_object(body)
    except ValueError as exc:
        raise RequestError(400, str(exc), code="invalid_body") from None
    return True
