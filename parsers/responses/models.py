"""The objects carried inside Responses stream events: the ``Response`` envelope and its parts.

Tolerant-reader rules as in ``parsers.assistants``: unknown keys are ignored, enum-like fields are
plain ``str`` and every field has a default, because OSS servers and proxies leave fields out
(reference responses-and-chat.md §5). Output items, content parts and annotations stay JSON
objects (``dict``): the item union has over twenty members and grows with every hosted tool, and
a snapshot must hand each one back exactly as the upstream sent it (§1.4: the final
``response.output`` is the authority the reducer is checked against).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

__all__ = [
    "IncompleteDetails",
    "JSONObject",
    "Logprob",
    "Response",
    "ResponseError",
    "ResponseUsage",
    "StreamError",
    "TopLogprob",
]

JSONObject: TypeAlias = dict[str, Any]
"""An output item, content part, annotation or any other object kept as decoded JSON."""


class _Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every payload model (frozen: one decoded payload is shared by every consumer)."""


class ResponseUsage(_Model, frozen=True):
    input_tokens: int = 0
    input_tokens_details: JSONObject | None = None
    output_tokens: int = 0
    output_tokens_details: JSONObject | None = None
    total_tokens: int = 0


class ResponseError(_Model, frozen=True):
    """``Response.error`` of a failed response (``code`` e.g. server_error, rate_limit_exceeded)."""

    code: str | None = None
    message: str = ""


class IncompleteDetails(_Model, frozen=True):
    """Why a response is incomplete: ``max_output_tokens`` or ``content_filter`` (§1.4)."""

    reason: str | None = None


class Response(_Model, frozen=True):
    """The ``response`` of the lifecycle events (``response.created`` ... ``response.incomplete``).

    ``status`` is one of completed, failed, in_progress, cancelled, queued, incomplete. The
    fields OpenAI's responses carry are modelled, the request echo included (``text`` with its
    structured-output format, ``reasoning``, ``truncation``...), so a snapshot agrees with the
    final object; others are skipped by the decoder. Times keep the wire's type (an integer
    stays one).
    """

    id: str = ""
    object: str = "response"
    created_at: int | float | None = None
    completed_at: int | float | None = None
    status: str | None = None
    model: str | None = None
    output: list[JSONObject] = msgspec.field(default_factory=list)
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: Any = None
    metadata: JSONObject | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    store: bool | None = None
    tools: list[JSONObject] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    service_tier: str | None = None
    text: JSONObject | None = None
    reasoning: JSONObject | None = None
    truncation: str | None = None
    user: str | None = None
    prompt: JSONObject | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None


class StreamError(_Model, frozen=True):
    """The error an ``error`` event reports, from either wire shape (§1.5)."""

    type: str | None = None
    code: str | int | None = None
    message: str = ""
    param: str | None = None


class TopLogprob(_Model, frozen=True):
    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None


class Logprob(_Model, frozen=True):
    """One entry of ``logprobs`` on ``output_text.delta``/``.done`` (``[]`` unless asked for)."""

    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None
