"""Fold one response's typed events into a snapshot: the ``Response`` as known so far.

Theory of operation. ``response.output`` is a list of items addressed by ``output_index``; the
events inside an item address it by ``item_id`` as well (reference responses-and-chat.md §1.4).
The accumulator keeps its own copy of each item (decoded JSON objects are shared with every other
consumer of the event, so they are never mutated), and the fragments of each growing string in a
slot keyed ``(kind, index)`` under its item's id:

* ``output_text`` and ``reasoning_text`` deltas -> ``content[content_index].text``; ``refusal``
  deltas -> ``content[content_index].refusal``; reasoning summary deltas ->
  ``summary[summary_index].text``;
* function-call and MCP argument deltas -> ``arguments``; custom tool input -> ``input``;
  code-interpreter code -> ``code``.

Fragments are joined at :meth:`ResponseAccumulator.snapshot` time (and collapsed, so repeated
snapshots stay linear). Half a surrogate pair stays in its fragment, so the next delta's half
joins it; one still alone in a snapshot, or in a whole object copied in, is U+FFFD
(``parsers._surrogates``). Identifiers and integers are set, never added. Whole objects replace
what was built: ``content_part.added``/``.done`` the part, the ``*.done`` events the string,
``output_item.done`` the item, and a lifecycle event whose ``response.output`` is not empty the
whole list (the final ``response.completed`` carries every item, §1.4; it is what the openai SDK
builds its final response from).

An event for an item never announced (servers that omit ``output_item.added``, LiteLLM#22102, or
a stream resumed with ``starting_after``) starts from a stub item at its ``output_index``. The
missing ``name`` on ``function_call_arguments.done`` is taken from the item, as announced.

An index places an entry in a list (``output``, ``content``, ``summary``, ``annotations``), padding
the positions before it. A negative index, or one more than :data:`_MAX_INDEX_GAP` past the
entries held, is ignored: the snapshot skips the event (the gateway relays it all the same), so
one event pads at most that many entries. A slot's part is placed when the slot opens, so the
next index is checked against it and an annotation needs no slot written first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from .._surrogates import scrub
from .decode import DoneEvent, ResponseStreamEvent
from .events import (
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    CustomToolCallInputDeltaEvent,
    CustomToolCallInputDoneEvent,
    ErrorEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    OutputTextAnnotationAddedEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ReasoningSummaryPartAddedEvent,
    ReasoningSummaryPartDoneEvent,
    ReasoningSummaryTextDeltaEvent,
    ReasoningSummaryTextDoneEvent,
    ReasoningTextDeltaEvent,
    ReasoningTextDoneEvent,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseQueuedEvent,
)
from .models import JSONObject, Response, StreamError
from .tool_events import (
    CodeInterpreterCallCodeDeltaEvent,
    CodeInterpreterCallCodeDoneEvent,
    McpCallArgumentsDeltaEvent,
    McpCallArgumentsDoneEvent,
)

__all__ = ["ResponseAccumulator"]

# Slot kinds: where in the item a string grows. (list key, index used, field, stub part type)
_TEXT, _REFUSAL, _REASONING, _SUMMARY, _ARGUMENTS, _INPUT, _CODE = range(7)
_PLACES: Final[dict[int, tuple[str | None, str, JSONObject | None]]] = {
    _TEXT: ("content", "text", {"type": "output_text", "text": "", "annotations": []}),
    _REFUSAL: ("content", "refusal", {"type": "refusal", "refusal": ""}),
    _REASONING: ("content", "text", {"type": "reasoning_text", "text": ""}),
    _SUMMARY: ("summary", "text", {"type": "summary_text", "text": ""}),
    _ARGUMENTS: (None, "arguments", None),
    _INPUT: (None, "input", None),
    _CODE: (None, "code", None),
}
# The item a delta implies when it arrives before (or without) its output_item.added.
_STUB_ITEMS: Final[dict[int, JSONObject]] = {
    _TEXT: {"type": "message", "status": "in_progress", "role": "assistant", "content": []},
    _REFUSAL: {"type": "message", "status": "in_progress", "role": "assistant", "content": []},
    _REASONING: {"type": "reasoning", "summary": [], "content": []},
    _SUMMARY: {"type": "reasoning", "summary": []},
    _ARGUMENTS: {"type": "function_call", "status": "in_progress", "arguments": ""},
    _INPUT: {"type": "custom_tool_call", "input": ""},
    _CODE: {"type": "code_interpreter_call", "status": "in_progress", "code": ""},
}

_MAX_INDEX_GAP: Final = 16
"""Positions an index may skip past a list's end. Servers append the next index (§1.4); one that
leaves events out (LiteLLM#22102 omits ``output_item.added``) leaves a few holes."""

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def _clone(value: Any) -> Any:
    """A deep copy of decoded JSON (one C round trip; items are small and copied rarely)."""
    try:
        return _json_decode(_json_encode(value))
    except UnicodeEncodeError:  # half a surrogate pair: only text from the fallback decode
        return _json_decode(_json_encode(scrub(value)))


class ResponseAccumulator:
    """Reducer over :data:`~parsers.responses.ResponseStreamEvent`; cheap per delta.

    One accumulator folds one response (its original stream and any ``starting_after`` resume).
    """

    __slots__ = ("_by_id", "_done", "_error", "_items", "_response", "_sequence", "_slots")

    def __init__(self) -> None:
        self._response: Response | None = None
        self._items: list[JSONObject | None] = []
        self._by_id: dict[str, JSONObject] = {}
        # Item id -> (kind, index) -> fragments: an item's slots go with it in one step.
        self._slots: dict[str, dict[tuple[int, int], list[str]]] = {}
        self._error: StreamError | None = None
        self._sequence: int | None = None
        self._done = False

    @property
    def sequence_number(self) -> int | None:
        """The last ``sequence_number`` seen (keepalives and unknown events included)."""
        return self._sequence

    def apply(self, event: ResponseStreamEvent) -> None:
        """Fold one event in. Events that change no state only advance ``sequence_number``."""
        # The text delta is nearly all of the traffic: tested before the table lookup.
        if type(event) is OutputTextDeltaEvent:
            self._append(event.item_id, event.output_index, _TEXT, event.content_index, event.delta)
            seq = event.sequence_number
        elif type(event) is DoneEvent:
            self._done = True
            return
        else:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
            seq = event.sequence_number
        if seq is not None:
            self._sequence = seq

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able data, independent of the accumulator's later state::

        {"response": {...Response fields, "output": [items]}, "sequence_number": n,
         "error": {type, code, message, param} | None, "done": bool}

        ``done``: the response has ended (its terminal event, or ``[DONE]``, was seen).
        """
        self._write_slots()
        response = self._response if self._response is not None else Response()
        body = msgspec.to_builtins(response)
        body["output"] = [item for item in self._items if item is not None]
        error = self._error
        snapshot: dict[str, Any] = _clone(
            {
                "response": body,
                "sequence_number": self._sequence,
                "error": msgspec.to_builtins(error) if error is not None else None,
                "done": self._done,
            }
        )
        return snapshot

    # -- whole objects ----------------------------------------------------------------------------

    def _on_response(self, event: ResponseCreatedEvent) -> None:
        response = event.response
        self._response = response
        if type(event) in _TERMINAL:
            self._done = True
        if response.output:
            self._items = [_clone(item) for item in response.output]
            self._by_id = {
                _key(item.get("id"), i): item for i, item in enumerate(self._items) if item
            }
            self._slots.clear()

    def _on_error(self, event: ErrorEvent) -> None:
        self._error = event.details()

    def _on_item(self, event: OutputItemAddedEvent) -> None:
        index = event.output_index
        items = self._items
        if not _fits(index, len(items)):
            return
        item = _clone(event.item)
        if index >= len(items):
            items.extend([None] * (index + 1 - len(items)))
        old = items[index]
        items[index] = item
        if old is not None:
            self._drop(_key(old.get("id"), index))
        key = _key(item.get("id"), index)
        self._drop(key)
        self._by_id[key] = item

    def _drop(self, key: str) -> None:
        self._by_id.pop(key, None)
        self._slots.pop(key, None)

    def _on_part(self, event: ContentPartAddedEvent) -> None:
        self._set_part(
            "content", event.item_id, event.output_index, event.content_index, event.part
        )

    def _on_summary_part(self, event: ReasoningSummaryPartAddedEvent) -> None:
        self._set_part(
            "summary", event.item_id, event.output_index, event.summary_index, event.part
        )

    def _set_part(
        self, key: str, item_id: str, output_index: int, index: int, part: JSONObject
    ) -> None:
        kind = (
            _SUMMARY
            if key == "summary"
            else _REASONING
            if part.get("type") == "reasoning_text"
            else _TEXT
        )
        item_key = item_id or f"#{output_index}"
        item = self._item(item_key, output_index, kind, index)
        if item is None:
            return
        parts = item.get(key)
        if not isinstance(parts, list):
            parts = item[key] = []
        if index >= len(parts):
            parts.extend({} for _ in range(index + 1 - len(parts)))
        parts[index] = _clone(part)
        slots = self._slots.get(item_key)
        if slots is not None:
            for kind_ in (_TEXT, _REFUSAL, _REASONING) if key == "content" else (_SUMMARY,):
                slots.pop((kind_, index), None)

    def _on_annotation(self, event: OutputTextAnnotationAddedEvent) -> None:
        if event.annotation is None:
            return
        key = event.item_id or f"#{event.output_index}"
        item = self._item(key, event.output_index, _TEXT, event.content_index)
        if item is None:
            return
        part = _part_at(item, "content", event.content_index, _PLACES[_TEXT][2])
        annotations = part.get("annotations")
        if not isinstance(annotations, list):
            annotations = part["annotations"] = []
        index = event.annotation_index
        if not _fits(index, len(annotations)):
            return
        if index >= len(annotations):
            annotations.extend({} for _ in range(index + 1 - len(annotations)))
        annotations[index] = _clone(event.annotation)

    # -- growing strings --------------------------------------------------------------------------

    def _item(self, key: str, output_index: int, kind: int, index: int) -> JSONObject | None:
        """The item ``key`` (its id, or ``#output_index`` for one without), a stub if unknown;
        None if ``output_index``, or ``index`` in the list ``kind`` grows, is out of range."""
        item = self._by_id.get(key)
        if item is not None:
            return item if _holds(item, kind, index) else None
        items = self._items
        if not _fits(output_index, len(items)):
            return None
        current = items[output_index] if output_index < len(items) else None
        # An item announced without id: the delta's id names it from now on.
        item = current if current is not None and not current.get("id") else _stub(key, kind)
        if not _holds(item, kind, index):
            return None
        if item is not current:
            self._place(item, output_index)
        self._by_id[key] = item
        return item

    def _place(self, stub: JSONObject, output_index: int) -> None:
        items = self._items
        if output_index >= len(items):
            items.extend([None] * (output_index + 1 - len(items)))
        if items[output_index] is None:
            items[output_index] = stub
        else:  # the index is taken by another item: keep both
            items.append(stub)

    def _append(self, item_id: str, output_index: int, kind: int, index: int, delta: str) -> None:
        key = item_id or f"#{output_index}"
        try:
            fragments = self._slots[key][kind, index]
        except KeyError:
            opened = self._open(key, output_index, kind, index)
            if opened is None:
                return
            fragments = opened
        fragments.append(delta)

    def _set(
        self, item_id: str, output_index: int, kind: int, index: int, value: str
    ) -> JSONObject | None:
        key = item_id or f"#{output_index}"
        fragments = self._open(key, output_index, kind, index)
        if fragments is None:
            return None
        fragments[:] = [value]
        return self._by_id[key]

    def _open(self, key: str, output_index: int, kind: int, index: int) -> list[str] | None:
        """A new slot, starting from what the item holds there (its part placed now); None if an
        index is out of range."""
        item = self._item(key, output_index, kind, index)
        if item is None:
            return None
        list_key, field, stub = _PLACES[kind]
        target = item if list_key is None else _part_at(item, list_key, index, stub)
        value = target.get(field)
        fragments = [value if isinstance(value, str) else ""]
        self._slots.setdefault(key, {})[(kind, index)] = fragments
        return fragments

    def _write_slots(self) -> None:
        by_id = self._by_id
        for item_id, slots in self._slots.items():
            item = by_id.get(item_id)
            if item is None:
                continue
            for (kind, index), fragments in slots.items():
                if len(fragments) > 1:
                    fragments[:] = ["".join(fragments)]
                list_key, field, stub = _PLACES[kind]
                target = item if list_key is None else _part_at(item, list_key, index, stub)
                target[field] = fragments[0]

    # -- per-event handlers -----------------------------------------------------------------------

    def _on_text_done(self, event: OutputTextDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _TEXT, event.content_index, event.text)

    def _on_refusal_delta(self, event: RefusalDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _REFUSAL, event.content_index, event.delta)

    def _on_refusal_done(self, event: RefusalDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _REFUSAL, event.content_index, event.refusal)

    def _on_reasoning_delta(self, event: ReasoningTextDeltaEvent) -> None:
        self._append(
            event.item_id, event.output_index, _REASONING, event.content_index, event.delta
        )

    def _on_reasoning_done(self, event: ReasoningTextDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _REASONING, event.content_index, event.text)

    def _on_summary_delta(self, event: ReasoningSummaryTextDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _SUMMARY, event.summary_index, event.delta)

    def _on_summary_done(self, event: ReasoningSummaryTextDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _SUMMARY, event.summary_index, event.text)

    def _on_arguments_delta(self, event: FunctionCallArgumentsDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _ARGUMENTS, 0, event.delta)

    def _on_arguments_done(self, event: FunctionCallArgumentsDoneEvent) -> None:
        item = self._set(event.item_id, event.output_index, _ARGUMENTS, 0, event.arguments)
        if item is not None and event.name:
            item["name"] = event.name

    def _on_mcp_arguments_delta(self, event: McpCallArgumentsDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _ARGUMENTS, 0, event.delta)

    def _on_mcp_arguments_done(self, event: McpCallArgumentsDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _ARGUMENTS, 0, event.arguments)

    def _on_input_delta(self, event: CustomToolCallInputDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _INPUT, 0, event.delta)

    def _on_input_done(self, event: CustomToolCallInputDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _INPUT, 0, event.input)

    def _on_code_delta(self, event: CodeInterpreterCallCodeDeltaEvent) -> None:
        self._append(event.item_id, event.output_index, _CODE, 0, event.delta)

    def _on_code_done(self, event: CodeInterpreterCallCodeDoneEvent) -> None:
        self._set(event.item_id, event.output_index, _CODE, 0, event.code)


def _key(item_id: Any, output_index: int) -> str:
    return item_id if isinstance(item_id, str) and item_id else f"#{output_index}"


def _fits(index: int, held: int) -> bool:
    return 0 <= index <= held + _MAX_INDEX_GAP


def _holds(item: JSONObject, kind: int, index: int) -> bool:
    """Whether ``index`` fits the list of ``item`` that slots of ``kind`` grow (if any)."""
    list_key = _PLACES[kind][0]
    if list_key is None:
        return True
    parts = item.get(list_key)
    return _fits(index, len(parts) if isinstance(parts, list) else 0)


def _stub(key: str, kind: int) -> JSONObject:
    stub: JSONObject = _clone(_STUB_ITEMS[kind])
    return stub if key.startswith("#") else {"id": key, **stub}


def _part_at(item: JSONObject, key: str, index: int, stub: JSONObject | None) -> JSONObject:
    parts = item.get(key)
    if not isinstance(parts, list):
        parts = item[key] = []
    while len(parts) <= index:
        parts.append(_clone(stub))
    part = parts[index]
    if not isinstance(part, dict):
        part = parts[index] = _clone(stub)
    result: JSONObject = part
    return result


_TERMINAL: Final = frozenset({ResponseCompletedEvent, ResponseFailedEvent, ResponseIncompleteEvent})
"""The events that end a response (OpenAI sends no ``[DONE]`` after them)."""

_Handler = Callable[[ResponseAccumulator, Any], None]
_HANDLERS: Final[dict[type, _Handler]] = {
    ResponseCreatedEvent: ResponseAccumulator._on_response,
    ResponseQueuedEvent: ResponseAccumulator._on_response,
    ResponseInProgressEvent: ResponseAccumulator._on_response,
    ResponseCompletedEvent: ResponseAccumulator._on_response,
    ResponseFailedEvent: ResponseAccumulator._on_response,
    ResponseIncompleteEvent: ResponseAccumulator._on_response,
    ErrorEvent: ResponseAccumulator._on_error,
    OutputItemAddedEvent: ResponseAccumulator._on_item,
    OutputItemDoneEvent: ResponseAccumulator._on_item,
    ContentPartAddedEvent: ResponseAccumulator._on_part,
    ContentPartDoneEvent: ResponseAccumulator._on_part,
    OutputTextDoneEvent: ResponseAccumulator._on_text_done,
    OutputTextAnnotationAddedEvent: ResponseAccumulator._on_annotation,
    RefusalDeltaEvent: ResponseAccumulator._on_refusal_delta,
    RefusalDoneEvent: ResponseAccumulator._on_refusal_done,
    ReasoningTextDeltaEvent: ResponseAccumulator._on_reasoning_delta,
    ReasoningTextDoneEvent: ResponseAccumulator._on_reasoning_done,
    ReasoningSummaryPartAddedEvent: ResponseAccumulator._on_summary_part,
    ReasoningSummaryPartDoneEvent: ResponseAccumulator._on_summary_part,
    ReasoningSummaryTextDeltaEvent: ResponseAccumulator._on_summary_delta,
    ReasoningSummaryTextDoneEvent: ResponseAccumulator._on_summary_done,
    FunctionCallArgumentsDeltaEvent: ResponseAccumulator._on_arguments_delta,
    FunctionCallArgumentsDoneEvent: ResponseAccumulator._on_arguments_done,
    McpCallArgumentsDeltaEvent: ResponseAccumulator._on_mcp_arguments_delta,
    McpCallArgumentsDoneEvent: ResponseAccumulator._on_mcp_arguments_done,
    CustomToolCallInputDeltaEvent: ResponseAccumulator._on_input_delta,
    CustomToolCallInputDoneEvent: ResponseAccumulator._on_input_done,
    CodeInterpreterCallCodeDeltaEvent: ResponseAccumulator._on_code_delta,
    CodeInterpreterCallCodeDoneEvent: ResponseAccumulator._on_code_done,
}
"""Event class -> handler, built once; classes absent here change nothing but the sequence."""
