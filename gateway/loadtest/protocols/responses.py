"""Responses API runs: ``POST /responses`` streamed, function calls answered with a follow-up.

Events are dispatched on the JSON ``type`` (the ``event:`` line may be missing on some servers);
a segment ends at ``response.completed``, ``response.failed`` or ``response.incomplete``; a
trailing ``data: [DONE]`` (LiteLLM style) is accepted. An event whose data is not JSON of the
shape read here fails the run as ``protocol`` (an unknown ``type`` is passed over). A completed response whose ``output``
holds ``function_call`` items is followed by one POST with every ``function_call_output`` and
``previous_response_id``. Subscribers read ``/streams/responses/{id}`` of the first response,
named by the ``runcast-response-id`` header (or, failing that, by ``response.created``).
"""

from __future__ import annotations

import msgspec

from parsers.errors import DECODE_ERRORS

from .base import LoadProtocol, Poster, Request, RunStart, Seen, Tracker

__all__ = ["ResponsesProtocol", "ResponsesTracker"]

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}
PROMPT = "Say something."
_MAX_TOOL_ROUNDS = 10
_TERMINAL = {
    "response.completed": "completed",
    "response.failed": "failed",
    "response.incomplete": "incomplete",
}


class _TypeView(msgspec.Struct):
    type: str = ""
    delta: str = ""


class _Item(msgspec.Struct):
    type: str = ""
    call_id: str = ""


class _Response(msgspec.Struct):
    id: str = ""
    status: str = ""
    output: list[_Item] = []


class _ResponseEvent(msgspec.Struct):
    response: _Response = msgspec.field(default_factory=_Response)


_type_decoder = msgspec.json.Decoder(_TypeView)
_response_decoder = msgspec.json.Decoder(_ResponseEvent)


class ResponsesTracker(Tracker):
    def __init__(self, protocol: ResponsesProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        self.response_id = ""
        self.first_response_id = ""
        self._call_ids: list[str] = []
        self._rounds = 0

    @property
    def channel(self) -> str | None:
        return f"/streams/responses/{self.first_response_id}" if self.first_response_id else None

    def feed(self, name: str, data: bytes) -> Seen:
        own = self._runcast(name)
        if own is not None:
            return own
        if data == b"[DONE]":
            return Seen(True, 0, True)
        try:
            event = _type_decoder.decode(data)
        except DECODE_ERRORS as exc:
            return self._bad(f"an event that does not decode ({exc})")
        kind = event.type or name
        if kind == "response.output_text.delta":
            return Seen(True, len(event.delta), False)
        if kind == "error":
            self.failure = "upstream_error"
            return Seen(True, 0, False)
        if kind == "response.created":
            try:
                self.response_id = _response_decoder.decode(data).response.id
            except DECODE_ERRORS as exc:
                return self._bad(f"a response.created that does not decode ({exc})")
            self.first_response_id = self.first_response_id or self.response_id
            return Seen(True, 0, False)
        status = _TERMINAL.get(kind)
        if status is None:
            return Seen(True, 0, False)
        self.status = status
        if status == "completed":
            try:
                output = _response_decoder.decode(data).response.output
            except DECODE_ERRORS as exc:
                # The stream's last word is unreadable: neither completed nor a call to answer.
                return self._bad(f"a response.completed that does not decode ({exc})")
            self._call_ids = [item.call_id for item in output if item.type == "function_call"]
            if self._call_ids:
                self.status = "requires_action"
        self.finished = self.status != "requires_action"
        return Seen(True, 0, True)

    def follow_up(self) -> Request | None:
        if self.status != "requires_action" or not self._call_ids:
            return None
        self._rounds += 1
        if self._rounds > _MAX_TOOL_ROUNDS:
            return None
        ids, self._call_ids = self._call_ids, []
        outputs = [{"type": "function_call_output", "call_id": i, "output": "ok"} for i in ids]
        return Request(
            "/responses",
            {**self._protocol.body(outputs), "previous_response_id": self.response_id},
        )


class ResponsesProtocol(LoadProtocol):
    name = "responses"
    channel_spans_run = False
    channel_header = ("runcast-response-id", "/streams/responses/")

    def body(self, input_: object) -> dict[str, object]:
        return {
            "model": self.model,
            "input": input_,
            "stream": True,
            "tools": [TOOL],
            "metadata": self.metadata(),
        }

    async def begin(self, post: Poster) -> RunStart:
        return RunStart(Request("/responses", self.body(PROMPT)))

    def tracker(self, start: RunStart) -> ResponsesTracker:
        return ResponsesTracker(self)
