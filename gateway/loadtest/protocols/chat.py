"""Chat Completions runs: ``POST /chat/completions`` streamed, tool calls answered as messages.

Chunks are data-only SSE events ending with ``data: [DONE]``. Text is ``choices[].delta.content``;
tool calls arrive as fragments keyed by ``index`` and are joined here; ``finish_reason`` gives the
outcome (``stop`` completed, ``length`` incomplete, ``tool_calls`` a follow-up with the assistant
message and one ``tool`` message per call). A chunk carrying ``error`` fails the run; one that
does not decode fails it as ``protocol``.
Subscribers read ``/streams/chat/{id}`` of the first completion, named by the
``runcast-completion-id`` header (or, failing that, by the first chunk's ``id``).
"""

from __future__ import annotations

import msgspec

from parsers.errors import DECODE_ERRORS

from .assistants import TOOL
from .base import LoadProtocol, Poster, Request, RunStart, Seen, Tracker

__all__ = ["ChatProtocol", "ChatTracker"]

PROMPT = "Say something."
_MAX_TOOL_ROUNDS = 10
_STATUS = {"stop": "completed", "length": "incomplete", "tool_calls": "requires_action"}


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    id: str = ""
    choices: list[_Choice] = []
    error: msgspec.Raw = msgspec.Raw(b"")
    usage: dict[str, object] | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def _said(chunk: _Chunk) -> int:
    """What a chunk says, for matching copies (``Seen.key``)."""
    return hash(
        (
            chunk.id,
            tuple(
                (
                    choice.index,
                    choice.delta.content,
                    choice.finish_reason,
                    tuple(
                        (
                            part.index,
                            part.id,
                            *(
                                (part.function.name, part.function.arguments)
                                if part.function
                                else ()
                            ),
                        )
                        for part in choice.delta.tool_calls or ()
                    ),
                )
                for choice in chunk.choices
            ),
        )
    )


class ChatTracker(Tracker):
    def __init__(self, protocol: ChatProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._messages: list[dict[str, object]] = [{"role": "user", "content": PROMPT}]
        self.completion_id = ""
        self.first_completion_id = ""
        self._calls: dict[int, dict[str, str]] = {}
        self._rounds = 0

    @property
    def channel(self) -> str | None:
        if not self.first_completion_id:
            return None
        return f"/streams/chat/{self.first_completion_id}"

    def feed(self, name: str, data: bytes) -> Seen:
        own = self._runcast(name)
        if own is not None:
            return own
        if data == b"[DONE]":
            self.finished = self.status is not None and self.status != "requires_action"
            return Seen(True, 0, True)
        try:
            chunk = _chunk_decoder.decode(data)
        except DECODE_ERRORS as exc:
            # Every chat event is a chunk: one that does not decode is hostile bytes, as the
            # OpenAI SDK finds it (it raises), not a chunk to skip.
            return self._bad(f"a chunk that does not decode ({exc})")
        if chunk.error:
            self.failure = "upstream_error"
            return Seen(True, 0, True)
        if chunk.id and chunk.id != self.completion_id:
            self.completion_id = chunk.id
            self.first_completion_id = self.first_completion_id or chunk.id
        chars = 0
        calls = False
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                chars += len(delta.content)
            calls = calls or bool(delta.tool_calls)
            for part in delta.tool_calls or ():
                call = self._calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                if part.function is not None:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
            if choice.finish_reason is not None:
                self.status = _STATUS.get(choice.finish_reason, choice.finish_reason)
        return Seen(True, chars, False, calls, key=_said(chunk))

    def follow_up(self) -> Request | None:
        if self.status != "requires_action" or not self._calls:
            return None
        self._rounds += 1
        if self._rounds > _MAX_TOOL_ROUNDS:
            return None
        calls = [self._calls[i] for i in sorted(self._calls)]
        self._calls = {}
        self._messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        )
        self._messages.extend(
            {"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls
        )
        self.status = None
        return Request("/chat/completions", self._protocol.body(list(self._messages)))


class ChatProtocol(LoadProtocol):
    name = "chat"
    channel_spans_run = False
    channel_header = ("runcast-completion-id", "/streams/chat/")

    def body(self, messages: list[dict[str, object]]) -> dict[str, object]:
        return {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": [TOOL],
            "metadata": self.metadata(),
        }

    async def begin(self, post: Poster) -> RunStart:
        return RunStart(
            Request("/chat/completions", self.body([{"role": "user", "content": PROMPT}]))
        )

    def tracker(self, start: RunStart) -> ChatTracker:
        return ChatTracker(self)
