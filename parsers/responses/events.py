"""The Responses stream events of the response lifecycle, output items, text and function calls.

The hosted-tool, shell, audio and compaction events are in ``tool_events``. Names follow the
openai SDK's ``Response...Event`` classes without the ``Response`` prefix; the ``type`` each one
is tagged with is in the reference table (responses-and-chat.md §1.3). Three events are outside
the SDK union: ``keepalive`` (sent by OpenAI and Azure on long requests; it takes a
``sequence_number``, §1.5), and, built by ``decode_event`` rather than decoded, ``[DONE]`` and
events of unknown ``type``.
"""

from __future__ import annotations

import msgspec

from ._base import ContentEvent, Event, ItemEvent
from .models import JSONObject, Logprob, Response, StreamError

__all__ = [
    "ContentPartAddedEvent",
    "ContentPartDoneEvent",
    "CustomToolCallInputDeltaEvent",
    "CustomToolCallInputDoneEvent",
    "ErrorEvent",
    "FunctionCallArgumentsDeltaEvent",
    "FunctionCallArgumentsDoneEvent",
    "KeepaliveEvent",
    "OutputItemAddedEvent",
    "OutputItemDoneEvent",
    "OutputTextAnnotationAddedEvent",
    "OutputTextDeltaEvent",
    "OutputTextDoneEvent",
    "ReasoningSummaryPartAddedEvent",
    "ReasoningSummaryPartDoneEvent",
    "ReasoningSummaryTextDeltaEvent",
    "ReasoningSummaryTextDoneEvent",
    "ReasoningTextDeltaEvent",
    "ReasoningTextDoneEvent",
    "RefusalDeltaEvent",
    "RefusalDoneEvent",
    "ResponseCompletedEvent",
    "ResponseCreatedEvent",
    "ResponseFailedEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseQueuedEvent",
]

# -- lifecycle: the whole Response --------------------------------------------------------------


class ResponseCreatedEvent(Event, frozen=True, tag="response.created"):
    response: Response = Response()


class ResponseQueuedEvent(Event, frozen=True, tag="response.queued"):
    response: Response = Response()


class ResponseInProgressEvent(Event, frozen=True, tag="response.in_progress"):
    response: Response = Response()


class ResponseCompletedEvent(Event, frozen=True, tag="response.completed"):
    response: Response = Response()


class ResponseFailedEvent(Event, frozen=True, tag="response.failed"):
    response: Response = Response()


class ResponseIncompleteEvent(Event, frozen=True, tag="response.incomplete"):
    response: Response = Response()


class ErrorEvent(Event, frozen=True, tag="error"):
    """``error`` in the spec's flat shape (``code``/``message``/``param``) or the nested one seen
    on the wire (``{"error": {...}}``, §1.5); :meth:`details` reads whichever was sent. A plain
    string under ``error`` (OpenAI-compatible servers) becomes the message."""

    code: str | int | None = None
    message: str | None = None
    param: str | None = None
    error: StreamError | str | None = None

    def details(self) -> StreamError:
        inner = self.error
        if isinstance(inner, StreamError):
            return inner
        message = inner if isinstance(inner, str) else self.message or ""
        return StreamError(code=self.code, message=message, param=self.param)


class KeepaliveEvent(Event, frozen=True, tag="keepalive"):
    """``{"type":"keepalive","sequence_number":n}``: no payload, but it consumes a number."""


# -- output items and content parts ------------------------------------------------------------


class OutputItemAddedEvent(Event, frozen=True, tag="response.output_item.added"):
    output_index: int = 0
    item: JSONObject = msgspec.field(default_factory=dict)


class OutputItemDoneEvent(Event, frozen=True, tag="response.output_item.done"):
    output_index: int = 0
    item: JSONObject = msgspec.field(default_factory=dict)


class ContentPartAddedEvent(ContentEvent, frozen=True, tag="response.content_part.added"):
    part: JSONObject = msgspec.field(default_factory=dict)


class ContentPartDoneEvent(ContentEvent, frozen=True, tag="response.content_part.done"):
    part: JSONObject = msgspec.field(default_factory=dict)


# -- text, refusal ------------------------------------------------------------------------------


class OutputTextDeltaEvent(ContentEvent, frozen=True, tag="response.output_text.delta"):
    """The hot path. ``obfuscation`` is random padding OpenAI adds to every delta (§1.2)."""

    delta: str = ""
    logprobs: list[Logprob] | None = None
    obfuscation: str | None = None


class OutputTextDoneEvent(ContentEvent, frozen=True, tag="response.output_text.done"):
    text: str = ""
    logprobs: list[Logprob] | None = None


class OutputTextAnnotationAddedEvent(
    ContentEvent, frozen=True, tag="response.output_text.annotation.added"
):
    annotation_index: int = 0
    annotation: JSONObject | None = None


class RefusalDeltaEvent(ContentEvent, frozen=True, tag="response.refusal.delta"):
    delta: str = ""
    obfuscation: str | None = None


class RefusalDoneEvent(ContentEvent, frozen=True, tag="response.refusal.done"):
    refusal: str = ""


# -- function and custom tool calls -------------------------------------------------------------


class FunctionCallArgumentsDeltaEvent(
    ItemEvent, frozen=True, tag="response.function_call_arguments.delta"
):
    delta: str = ""
    obfuscation: str | None = None


class FunctionCallArgumentsDoneEvent(
    ItemEvent, frozen=True, tag="response.function_call_arguments.done"
):
    """``name`` is often absent on the wire (§1.3); the item from ``output_item.added`` has it."""

    arguments: str = ""
    name: str | None = None


class CustomToolCallInputDeltaEvent(
    ItemEvent, frozen=True, tag="response.custom_tool_call_input.delta"
):
    delta: str = ""
    obfuscation: str | None = None


class CustomToolCallInputDoneEvent(
    ItemEvent, frozen=True, tag="response.custom_tool_call_input.done"
):
    input: str = ""


# -- reasoning ----------------------------------------------------------------------------------


class ReasoningSummaryPartAddedEvent(
    ItemEvent, frozen=True, tag="response.reasoning_summary_part.added"
):
    summary_index: int = 0
    part: JSONObject = msgspec.field(default_factory=dict)


class ReasoningSummaryPartDoneEvent(
    ItemEvent, frozen=True, tag="response.reasoning_summary_part.done"
):
    summary_index: int = 0
    part: JSONObject = msgspec.field(default_factory=dict)
    status: str | None = None


class ReasoningSummaryTextDeltaEvent(
    ItemEvent, frozen=True, tag="response.reasoning_summary_text.delta"
):
    summary_index: int = 0
    delta: str = ""
    obfuscation: str | None = None


class ReasoningSummaryTextDoneEvent(
    ItemEvent, frozen=True, tag="response.reasoning_summary_text.done"
):
    summary_index: int = 0
    text: str = ""


class ReasoningTextDeltaEvent(ContentEvent, frozen=True, tag="response.reasoning_text.delta"):
    delta: str = ""
    obfuscation: str | None = None


class ReasoningTextDoneEvent(ContentEvent, frozen=True, tag="response.reasoning_text.done"):
    text: str = ""
