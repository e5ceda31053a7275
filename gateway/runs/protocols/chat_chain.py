"""Chat Completions' part of a tool chain (``toolchain.py``): :class:`ChatRound`.

A completion's calls are its choice's ``tool_calls`` when that choice finished with
``finish_reason: "tool_calls"``, as ``parsers.chat``'s accumulator joins them (tolerant of
deltas without ``index`` and of whole calls in one delta, reference responses-and-chat.md §7.5);
a completion with several choices (``n`` > 1) is not continued. Chat is stateless: the follow-up
is a new ``POST /chat/completions`` with the creating request's members as they were, ``stream:
true``, and ``messages`` grown by the assistant message with its ``tool_calls`` and one
``{"role": "tool", "tool_call_id", "content"}`` message per call, round after round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.tools import ToolOutput
from parsers.chat import ChatAccumulator, ChatCompletionChunk, ChatDoneEvent

from .toolchain import FunctionCall, FunctionSpec

__all__ = ["ChatRound"]

_encode = msgspec.json.Encoder().encode


class ChatRound:
    """Folds one completion at a time, builds its follow-up."""

    __slots__ = ("_acc", "_message", "_messages", "_request")

    owner = "completion_id"

    def __init__(self, request: dict[str, Any]) -> None:
        messages = request.get("messages")
        self._request = request
        self._messages: list[Any] = list(messages) if isinstance(messages, list) else []
        self._acc = ChatAccumulator()
        self._message: tuple[str, dict[str, Any], list[FunctionCall]] | None = None

    def observe(self, typed: object) -> None:
        if type(typed) is ChatCompletionChunk or type(typed) is ChatDoneEvent:
            self._acc.apply(typed)
            self._message = None

    def ended_with(self) -> tuple[str, list[FunctionCall]] | None:
        found = self._ended()
        return None if found is None else (found[0], found[2])

    def _ended(self) -> tuple[str, dict[str, Any], list[FunctionCall]] | None:
        if self._message is None:
            completion = self._acc.snapshot()["completion"]
            choices = completion["choices"]
            if len(choices) != 1 or choices[0]["finish_reason"] != "tool_calls":
                return None
            message = choices[0]["message"]
            calls = [
                FunctionCall(
                    id=call["id"] or "",
                    function=FunctionSpec(
                        name=call["function"]["name"], arguments=call["function"]["arguments"]
                    ),
                    type=call["type"],
                )
                for call in message.get("tool_calls") or ()
            ]
            # No call it could read (at an index the accumulator cannot place): an empty list,
            # which the chain reports rather than ending without a word.
            self._message = (completion["id"], message, calls)
        return self._message

    def blocked(self) -> str | None:
        return None

    def follow_up(self, outputs: Sequence[ToolOutput]) -> bytes:
        found = self._ended()
        assert found is not None
        _, message, _ = found
        assistant = {
            "role": "assistant",
            "content": message.get("content"),
            "tool_calls": message["tool_calls"],
        }
        tools = [
            {"role": "tool", "tool_call_id": o.tool_call_id, "content": o.output} for o in outputs
        ]
        self._messages = [*self._messages, assistant, *tools]
        self._acc = ChatAccumulator()
        self._message = None
        return _encode({**self._request, "messages": self._messages, "stream": True})
