"""Assistants runs: a thread per run, ``POST /threads/{id}/runs`` streamed, tool outputs answered.

The stream ends each segment with ``done`` (spec §2.3); a ``done`` right after
``thread.run.requires_action`` only ends a segment: the continuation after the tool outputs
follows on the same thread channel, which is why subscribers open on it before the run starts.
A message delta or run event that does not decode fails the run as ``protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec

from parsers.errors import DECODE_ERRORS

from .base import BadAnswer, LoadProtocol, Poster, Request, RunStart, Seen, Tracker, checked_id

__all__ = ["AssistantsProtocol", "AssistantsTracker"]

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    },
}
_MAX_TOOL_ROUNDS = 10


class _IdView(msgspec.Struct):
    id: str


class _ToolCall(msgspec.Struct):
    id: str


class _Outputs(msgspec.Struct):
    tool_calls: list[_ToolCall] = []


class _RequiredAction(msgspec.Struct):
    submit_tool_outputs: _Outputs = msgspec.field(default_factory=_Outputs)


class _RunView(msgspec.Struct):
    id: str = ""
    status: str = ""
    required_action: _RequiredAction | None = None


class _TextValue(msgspec.Struct):
    value: str = ""


class _ContentDelta(msgspec.Struct):
    text: _TextValue | None = None


class _MessageDeltaBody(msgspec.Struct):
    content: list[_ContentDelta] = []


class _MessageDelta(msgspec.Struct):
    delta: _MessageDeltaBody = msgspec.field(default_factory=_MessageDeltaBody)


_id_decoder = msgspec.json.Decoder(_IdView)
_run_decoder = msgspec.json.Decoder(_RunView)
_delta_decoder = msgspec.json.Decoder(_MessageDelta)


class AssistantsTracker(Tracker):
    def __init__(self, thread_id: str) -> None:
        super().__init__()
        self._thread_id = thread_id
        self.run_id = ""
        self._tool_call_ids: list[str] = []
        self._rounds = 0

    @property
    def channel(self) -> str:
        return f"/streams/threads/{self._thread_id}"

    def feed(self, name: str, data: bytes) -> Seen:
        own = self._runcast(name)
        if own is not None:
            return own
        if name == "thread.message.delta":
            try:
                delta = _delta_decoder.decode(data).delta
            except DECODE_ERRORS as exc:
                return self._bad(f"a {name} that does not decode ({exc})")
            chars = sum(len(part.text.value) for part in delta.content if part.text is not None)
            return Seen(True, chars, False)
        if name == "done":
            self.finished = self.status != "requires_action"
            return Seen(True, 0, True)
        if name == "error":
            self.failure = "upstream_error"
            return Seen(True, 0, False)
        if name.startswith("thread.run.") and not name.startswith("thread.run.step."):
            try:
                run = _run_decoder.decode(data)
            except DECODE_ERRORS as exc:
                return self._bad(f"a {name} that does not decode ({exc})")
            if run.id:
                try:
                    self.run_id = checked_id(run.id, f"{name} run id")  # a follow-up's URL
                except BadAnswer as exc:
                    return self._bad(str(exc))
            self.status = run.status or self.status
            if run.status == "requires_action" and run.required_action is not None:
                calls = run.required_action.submit_tool_outputs.tool_calls
                self._tool_call_ids = [call.id for call in calls]
        return Seen(True, 0, False)

    def follow_up(self) -> Request | None:
        if self.status != "requires_action" or not self._tool_call_ids:
            return None
        self._rounds += 1
        if self._rounds > _MAX_TOOL_ROUNDS:
            return None
        ids, self._tool_call_ids = self._tool_call_ids, []
        return Request(
            f"/threads/{self._thread_id}/runs/{self.run_id}/submit_tool_outputs",
            {"stream": True, "tool_outputs": [{"tool_call_id": i, "output": "ok"} for i in ids]},
        )


class AssistantsProtocol(LoadProtocol):
    name = "assistants"
    headers: ClassVar[Mapping[str, str]] = {"OpenAI-Beta": "assistants=v2"}

    def __init__(self, *, model: str, scenario: str) -> None:
        super().__init__(model=model, scenario=scenario)
        self.assistant_id = ""

    async def prepare(self, post: Poster) -> None:
        raw = await post(
            "/assistants", {"model": self.model, "name": "runcast-loadtest", "tools": [TOOL]}
        )
        self.assistant_id = _id_decoder.decode(raw).id

    async def begin(self, post: Poster) -> RunStart:
        thread_id = checked_id(_id_decoder.decode(await post("/threads", {})).id, "thread id")
        body = {"assistant_id": self.assistant_id, "stream": True, "metadata": self.metadata()}
        return RunStart(
            Request(f"/threads/{thread_id}/runs", body),
            channel=f"/streams/threads/{thread_id}",
            token_scope={"thread_id": thread_id},
        )

    def tracker(self, start: RunStart) -> AssistantsTracker:
        path = start.request.path
        return AssistantsTracker(path.removeprefix("/threads/").removesuffix("/runs"))
