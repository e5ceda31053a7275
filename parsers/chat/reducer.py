"""Fold a chat stream's chunks into a snapshot shaped like the ``chat.completion`` they join to.

Theory of operation. Choices merge by ``index``; within a choice, tool calls merge by their
``index`` (reference responses-and-chat.md §4.1-§4.2, §7.5). The rules follow the openai SDK's
``accumulate_delta`` where it is right, and part from it where it is not:

* ``content``, ``refusal``, ``function.arguments``, reasoning strings and ``audio.data`` and
  ``.transcript`` are concatenated (as fragments, joined at snapshot time);
* ``id``, ``type``, ``role``, ``function.name``, ``audio.id``, ``audio.expires_at`` and
  ``finish_reason`` are set, never concatenated (a server repeating the id in every delta would
  make the SDK's ``call_1call_1``); integers are never added (the SDK adds any two numbers);
* ``annotations`` lists are extended (each entry is a whole citation; the SDK raises on a second
  list, as its entries carry no ``index``);
* a tool-call entry without ``index`` (Gemini, openai-python#2806) continues the call with the
  same ``id``, or starts a new call when its ``id`` is new, or continues the last call when it
  has no ``id`` either (jin-bo/agentao#117);
* an entry whose ``id`` differs from the id of the call at its ``index`` is a new call (servers
  that number every call 0), and later id-less entries with that ``index`` continue it; several entries with one ``index`` in one chunk are fragments of one
  call, merged in order (vLLM speculative decoding, openai-python#3201);
* a whole call in one delta (Ollama) is just a call with one fragment;
* ``logprobs.content``/``.refusal`` lists are extended; ``usage`` is the last non-null one (the
  ``include_usage`` chunk has empty ``choices``); chunk-level ids and fields are taken when
  non-empty, so Azure's async-filter chunks (``object: ""``, empty ids) change nothing;
* a choice or tool-call ``index`` that is negative, or more than :data:`_MAX_INDEX_GAP` past the
  entries held, is left out of the snapshot (the gateway relays the chunk all the same);
* half a surrogate pair stays in its fragment, so the next delta's half joins it; a snapshot
  that holds a half without its other half has it as U+FFFD (``parsers._surrogates``).

Calls are found by id through a dict: an entry costs the same however many calls came before.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .._surrogates import scrub
from .chunks import (
    AudioDelta,
    ChatCompletionChunk,
    ChatDoneEvent,
    ChatError,
    ChatErrorEvent,
    ChatStreamEvent,
    ChoiceDelta,
    CompletionUsage,
    ToolCallDelta,
)

__all__ = ["ChatAccumulator"]

_MAX_INDEX_GAP: Final = 16
"""Positions a new ``index`` may skip past the entries held. OpenAI numbers choices and calls 0,
1, 2... (reference §4.1); the deviations known repeat or omit an index (§5), none skips: slack."""


def _joined(fragments: list[str]) -> str:
    if len(fragments) > 1:
        fragments[:] = ["".join(fragments)]
    return fragments[0]


class _ToolCall:
    __slots__ = ("arguments", "id", "name", "order", "type")

    def __init__(self, order: int = 0) -> None:
        self.order = order
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = [""]

    def build(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type or "function",
            "function": {"name": self.name, "arguments": _joined(self.arguments)},
        }


class _Audio:
    __slots__ = ("data", "expires_at", "id", "transcript")

    def __init__(self) -> None:
        self.id: str | None = None
        self.expires_at: int | None = None
        self.data: list[str] = []
        self.transcript: list[str] = []

    def merge(self, delta: AudioDelta) -> None:
        if delta.id:
            self.id = delta.id
        if delta.expires_at is not None:
            self.expires_at = delta.expires_at
        if delta.data:
            self.data.append(delta.data)
        if delta.transcript:
            self.transcript.append(delta.transcript)

    def build(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "data": _joined(self.data) if self.data else None,
            "expires_at": self.expires_at,
            "transcript": _joined(self.transcript) if self.transcript else None,
        }


class _Choice:
    __slots__ = (
        "aliases",
        "annotations",
        "audio",
        "calls",
        "content",
        "finish_reason",
        "function_call",
        "ids",
        "last_call",
        "logprobs",
        "next_call",
        "reasoning",
        "refusal",
        "role",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] | None = None
        self.refusal: list[str] | None = None
        self.reasoning: dict[str, list[str]] | None = None
        self.calls: dict[int, _ToolCall] = {}
        # Call id -> index of the first call (in arrival order) with that id.
        self.ids: dict[str, int] = {}
        # An index after every call's.
        self.next_call = 0
        # Wire index -> the call it now means, once a new id reused an index.
        self.aliases: dict[int, int] | None = None
        self.last_call: int | None = None
        self.function_call: _ToolCall | None = None
        self.finish_reason: str | None = None
        self.logprobs: dict[str, Any] | None = None
        self.annotations: list[Any] | None = None
        self.audio: _Audio | None = None

    def merge(self, delta: ChoiceDelta) -> None:
        if delta.content is not None:
            if self.content is None:
                self.content = [delta.content]
            else:
                self.content.append(delta.content)
        if delta.role is not None:
            self.role = delta.role
        if delta.tool_calls is not None:
            for entry in delta.tool_calls:
                self._merge_call(entry)
        if delta.refusal is not None:
            if self.refusal is None:
                self.refusal = [delta.refusal]
            else:
                self.refusal.append(delta.refusal)
        if delta.reasoning is not None:
            self._reason("reasoning", delta.reasoning)
        if delta.reasoning_content is not None:
            self._reason("reasoning_content", delta.reasoning_content)
        if delta.function_call is not None:
            call = self.function_call
            if call is None:
                call = self.function_call = _ToolCall()
            fn = delta.function_call
            if fn.name:
                call.name = fn.name
            if fn.arguments:
                call.arguments.append(fn.arguments)
        if delta.annotations is not None:
            if self.annotations is None:
                self.annotations = list(delta.annotations)
            else:
                self.annotations.extend(delta.annotations)
        if delta.audio is not None:
            audio = self.audio
            if audio is None:
                audio = self.audio = _Audio()
            audio.merge(delta.audio)

    def _reason(self, key: str, text: str) -> None:
        reasoning = self.reasoning
        if reasoning is None:
            reasoning = self.reasoning = {}
        reasoning.setdefault(key, []).append(text)

    def _merge_call(self, entry: ToolCallDelta) -> None:
        calls = self.calls
        index = entry.index
        call_id = entry.id
        if index is None:
            index = self._by_id(call_id) if call_id else self.last_call
            if index is None:
                index = self.next_call
        else:
            aliases = self.aliases
            wire = index
            if aliases is not None:
                index = aliases.get(wire, wire)
            if call_id and index in calls:
                known = calls[index].id
                if known and known != call_id:
                    index = self._by_id(call_id)
                    if aliases is None:
                        aliases = self.aliases = {}
                    aliases[wire] = index
        call = calls.get(index)
        if call is None:
            # Only a wire index can fail: the indices chosen here are at most next_call, which fits.
            if not 0 <= index <= len(calls) + _MAX_INDEX_GAP:
                return
            call = calls[index] = _ToolCall(len(calls))
            self.next_call = max(self.next_call, index + 1)
        self.last_call = index
        if call_id and call.id != call_id:
            self._name(call, index, call_id)
        if entry.type:
            call.type = entry.type
        fn = entry.function
        if fn is not None:
            if fn.name:
                call.name = fn.name
            if fn.arguments:
                call.arguments.append(fn.arguments)

    def _by_id(self, call_id: str) -> int:
        """The index of the call ``call_id``, or a new index after every known one."""
        index = self.ids.get(call_id)
        return self.next_call if index is None else index

    def _name(self, call: _ToolCall, index: int, call_id: str) -> None:
        call.id = call_id
        first = self.ids.get(call_id)
        if first is None or self.calls[first].order > call.order:
            self.ids[call_id] = index

    def merge_logprobs(self, logprobs: dict[str, Any]) -> None:
        mine = self.logprobs
        if mine is None:
            self.logprobs = {k: list(v) if isinstance(v, list) else v for k, v in logprobs.items()}
            return
        for key, value in logprobs.items():
            if isinstance(value, list) and isinstance(mine.get(key), list):
                mine[key].extend(value)
            elif value is not None:
                mine[key] = list(value) if isinstance(value, list) else value

    def build(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role or "assistant",
            "content": _joined(self.content) if self.content is not None else None,
            "refusal": _joined(self.refusal) if self.refusal is not None else None,
        }
        if self.calls:
            message["tool_calls"] = [self.calls[i].build() for i in sorted(self.calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call.build()["function"]
        if self.reasoning is not None:
            message.update((k, _joined(v)) for k, v in self.reasoning.items())
        if self.annotations is not None:
            message["annotations"] = self.annotations
        if self.audio is not None:
            message["audio"] = self.audio.build()
        return {
            "index": index,
            "message": message,
            "finish_reason": self.finish_reason,
            "logprobs": self.logprobs,
        }


class ChatAccumulator:
    """Reducer over :data:`~parsers.chat.ChatStreamEvent`; cheap per chunk."""

    __slots__ = (
        "_choices",
        "_created",
        "_done",
        "_error",
        "_id",
        "_model",
        "_service_tier",
        "_system_fingerprint",
        "_usage",
    )

    def __init__(self) -> None:
        self._id = ""
        self._created: int | None = None
        self._model: str | None = None
        self._system_fingerprint: str | None = None
        self._service_tier: str | None = None
        self._usage: CompletionUsage | None = None
        self._choices: dict[int, _Choice] = {}
        self._error: ChatError | None = None
        self._done = False

    def apply(self, event: ChatStreamEvent) -> None:
        """Fold one event in."""
        if type(event) is ChatCompletionChunk:
            self._chunk(event)
        elif type(event) is ChatDoneEvent:
            self._done = True
        elif type(event) is ChatErrorEvent:
            self._error = event.error

    def _chunk(self, chunk: ChatCompletionChunk) -> None:
        if not self._id and chunk.id:
            self._id = chunk.id
            self._created = chunk.created
        if chunk.model:
            self._model = chunk.model
        if chunk.system_fingerprint:
            self._system_fingerprint = chunk.system_fingerprint
        if chunk.service_tier:
            self._service_tier = chunk.service_tier
        if chunk.usage is not None:
            self._usage = chunk.usage
        choices = self._choices
        for choice in chunk.choices:
            state = choices.get(choice.index)
            if state is None:
                if not 0 <= choice.index <= len(choices) + _MAX_INDEX_GAP:
                    continue
                state = choices[choice.index] = _Choice()
            state.merge(choice.delta)
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
            if choice.logprobs is not None:
                state.merge_logprobs(choice.logprobs)

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able data, independent of the accumulator's later state::

        {"completion": {id, object: "chat.completion", created, model, choices: [...], usage,
                        system_fingerprint, service_tier},
         "error": {message, type, code, param} | None, "done": bool}
        """
        choices = self._choices
        completion = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [choices[i].build(i) for i in sorted(choices)],
            "usage": msgspec.to_builtins(self._usage) if self._usage is not None else None,
            "system_fingerprint": self._system_fingerprint,
            "service_tier": self._service_tier,
        }
        state = {"completion": completion, "error": self._error, "done": self._done}
        try:
            encoded = msgspec.json.encode(state)
        except UnicodeEncodeError:  # half a surrogate pair: only text from the fallback decode
            encoded = msgspec.json.encode(scrub(msgspec.to_builtins(state)))
        snapshot: dict[str, Any] = msgspec.json.decode(encoded)
        return snapshot
