"""The Responses API's part of a tool chain (``toolchain.py``): :class:`ResponsesRound`.

A response's calls are the ``function_call`` items of its ``response.completed`` (the completed
items, never the deltas; reference responses-and-chat.md §7.4); a failed or incomplete response
has none to answer. Other items that wait on the application (``custom_tool_call``,
``computer_call``, ... §3.4) are calls runcast cannot answer. The follow-up
(§3.2, §3.5) is ``POST /responses`` with one ``function_call_output`` per call and
``previous_response_id`` (or, when the creating request named a ``conversation``, that
conversation, which cannot be combined with ``previous_response_id``), ``stream: true``, and the
creating request's parameters: ``instructions`` are not inherited upstream and OpenAI's own loop
sends ``model``, ``tools``, ``tool_choice`` again every turn. A response with ``store: false``
cannot be chained to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.tools import ToolOutput
from parsers.responses import TERMINAL_EVENT_TYPES, ResponseCompletedEvent

from .toolchain import FunctionCall, FunctionSpec

__all__ = ["CARRIED", "ResponsesRound"]

CARRIED = (
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "reasoning",
    "text",
    "truncation",
    "include",
    "metadata",
    "user",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
)
"""The creating request's members every follow-up carries (none is inherited from the previous
response but its input and output items)."""

_encode = msgspec.json.Encoder().encode


class ResponsesRound:
    """Reads one response at a time, builds its follow-up."""

    __slots__ = ("_carried", "_completed", "_conversation", "_ended", "_unstored")

    owner = "response_id"

    def __init__(self, request: dict[str, Any]) -> None:
        self._carried = {key: request[key] for key in CARRIED if key in request}
        conversation = request.get("conversation")
        self._conversation = conversation if conversation else None
        self._completed: ResponseCompletedEvent | None = None
        self._ended = False
        # The request's own word: servers that echo no `store` (or echo it wrong) are common.
        self._unstored = request.get("store") is False

    def observe(self, typed: object) -> None:
        if type(typed) is ResponseCompletedEvent:
            self._completed = typed
        elif getattr(typed, "type", None) in TERMINAL_EVENT_TYPES:
            self._ended = True  # failed or incomplete: nothing to answer

    def ended_with(self) -> tuple[str, list[FunctionCall]] | None:
        completed = self._completed
        if completed is None or self._ended:
            return None
        calls = [_call(item) for item in completed.response.output if _is_call(item)]
        return (completed.response.id, calls) if calls else None

    def blocked(self) -> str | None:
        completed = self._completed
        if completed is not None and (self._unstored or completed.response.store is False):
            return "the response was not stored (store: false): there is nothing to chain to"
        return None

    def follow_up(self, outputs: Sequence[ToolOutput]) -> bytes:
        completed = self._completed
        assert completed is not None
        link: dict[str, Any] = (
            {"conversation": self._conversation}
            if self._conversation is not None
            else {"previous_response_id": completed.response.id}
        )
        self._completed = None
        self._ended = False
        items = [
            {"type": "function_call_output", "call_id": o.tool_call_id, "output": o.output}
            for o in outputs
        ]
        return _encode({**self._carried, **link, "input": items, "stream": True})


def _is_call(item: dict[str, Any]) -> bool:
    """An item waiting for an output: a ``function_call`` (with no ``call_id``, or an empty or
    null one, too: the chain reports it cannot answer it rather than end without a word), or
    another item carrying a ``call_id`` (``custom_tool_call``, ``computer_call`` ...)."""
    return item.get("type") == "function_call" or item.get("call_id") is not None


def _call(item: dict[str, Any]) -> FunctionCall:
    kind = str(item.get("type"))
    name = item.get("name")
    arguments = item.get("arguments")
    return FunctionCall(
        id=str(item.get("call_id") or ""),
        function=FunctionSpec(
            name=name if isinstance(name, str) else kind,
            arguments=arguments if isinstance(arguments, str) else "",
        ),
        type="function" if kind == "function_call" else kind,
    )
