"""The simulated Responses API's operations, independent of HTTP, with the rules that decide a
status: 404 for unknown (or ``store: false``) ids, 400 for an input item with a key the simulator
reads that is not a string (``ItemView``; checked before anything starts, as a conversation takes
the items in when the response ends), for ``previous_response_id`` together with
``conversation``, for background without store, for a follow-up that leaves a function call
without its output (reference responses-and-chat.md §3.3), for re-streaming a foreground response
or one older than the window (§2.1), for cancelling a foreground response.

What a new response does comes from its turn (``turns.py``): the turn of the response named by
``previous_response_id``, or of the conversation, continued by this request's input items. Its
scenario is the request's ``metadata.mock_scenario`` (or header), else the previous response's,
else the server default. A tool scenario calls functions while the turn has done fewer tool
rounds than the scenario has; then the answer quotes every output of the turn.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.mock.bodies import check_view
from gateway.mock.engine import Engine
from gateway.mock.errors import APIError, clipped
from gateway.mock.eventlog import EventLog
from gateway.mock.ids import new_id
from gateway.mock.lifecycle import now
from gateway.mock.responses.driver import TERMINAL, ResponseDriver, ResponsePlan
from gateway.mock.responses.frames import Framer
from gateway.mock.responses.objects import Conversation, ConversationId, Response
from gateway.mock.responses.requests import (
    INPUT_VIEW,
    CreateConversationRequest,
    CreateResponseRequest,
    function_definitions,
    input_items,
    text_chars,
)
from gateway.mock.responses.store import ConversationRecord, ResponseRecord, ResponseStore
from gateway.mock.scenarios import round_tools, scenario_for_run
from gateway.mock.settings import MockSettings
from gateway.mock.turns import Turn
from gateway.mock.wire import http_refusal, request_scenario, request_wire

__all__ = ["ResponsesService", "fold_items"]

_MAX_LAG = 4_096  # frames a foreground stream's reader may lag before the driver waits
_PROMPT_BASE = 20


def fold_items(turn: Turn, items: list[dict[str, Any]]) -> None:
    """Feed Responses input/output items to ``turn`` (consecutive calls are one round)."""
    calls: list[tuple[str, str]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "function_call":
            calls.append((str(item.get("call_id")), str(item.get("name"))))
            continue
        turn.calls(calls)
        calls = []
        if kind == "message" and item.get("role") == "user":
            turn.user()
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else msgspec.json.encode(output).decode()
            turn.output(str(item.get("call_id")), text)
    turn.calls(calls)


class ResponsesService:
    """Responses and conversations of one simulator app."""

    def __init__(self, settings: MockSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.store = ResponseStore(settings)

    # -- responses -----------------------------------------------------------------------------

    def create(self, req: CreateResponseRequest, headers: Mapping[str, str]) -> ResponseRecord:
        """Validate, plan and start a response; its driver runs once the caller yields."""
        check_view(req.input, INPUT_VIEW, "input")
        if req.previous_response_id and req.conversation:
            raise APIError(
                400,
                "Mutually exclusive parameters: 'previous_response_id' and 'conversation'. "
                "Ensure you are only providing one of: 'previous_response_id' or 'conversation'.",
                param="conversation",
            )
        background = bool(req.background)
        store = req.store is not False
        if background and not store:
            raise APIError(400, "Background mode requires store=true.", param="background")
        previous = None
        conversation = None
        turn = Turn()
        context = 0
        inherited = self.settings.scenario
        if req.previous_response_id:
            previous = self._stored(req.previous_response_id, "previous_response_id")
            turn, context, inherited = (
                previous.turn.copy(),
                previous.context_chars,
                previous.scenario,
            )
        elif (conversation_id := req.conversation_id) is not None:
            conversation = self.conversation(conversation_id, "conversation")
            turn, context = conversation.turn.copy(), conversation.context_chars
        items = input_items(req.input)
        fold_items(turn, items)
        if turn.unknown:
            raise APIError(
                400,
                f"No tool call found for function call output with call_id {clipped(turn.unknown[0])}.",
                param="input",
            )
        if turn.unanswered:
            raise APIError(
                400,
                f"No tool output found for function call {clipped(turn.unanswered[0])}.",
                param="input",
            )
        context += sum(text_chars(item) for item in items) + len(req.instructions or "")
        scenario = request_scenario(req.metadata, headers, inherited)
        refusal = http_refusal(scenario, self.settings.retry_after_s)
        if refusal is not None:
            raise refusal
        functions = function_definitions(req.tools)
        scenario = scenario_for_run(scenario, functions)
        calling = turn.rounds < scenario.tool_rounds
        plan = ResponsePlan(
            scenario=scenario,
            calls=round_tools(scenario, functions, turn.rounds) if calling else [],
            quoted=[] if calling else list(turn.quoted),
            first_round=turn.rounds == 0,
            input_tokens=_PROMPT_BASE + context // 4,
        )
        response = _new_response(req, background, store, conversation)
        wire = request_wire(self.settings, req.metadata, headers)
        log = EventLog(retain=background, max_lag=_MAX_LAG)
        options = req.stream_options
        framer = Framer(
            data_only=wire.data_only,
            obfuscate=options is None or options.include_obfuscation is not False,
            rng=random.Random(self.settings.seed),
        )
        record = ResponseRecord(
            response,
            log,
            scenario=scenario.name,
            turn=turn,
            context_chars=context,
            created=asyncio.get_running_loop().time(),
            conversation=conversation,
        )
        driver = ResponseDriver(
            settings=self.settings,
            response=response,
            log=log,
            plan=plan,
            wire=wire,
            framer=framer,
            on_end=lambda: self._ended(record, items),
        )
        record.driver = driver
        self.store.add(record)
        record.task = self.engine.spawn(driver.main(), f"mock-response {response.id}")
        return record

    def get(self, response_id: str) -> ResponseRecord:
        return self._stored(response_id, None)

    def _ended(self, record: ResponseRecord, items: list[dict[str, Any]]) -> None:
        _ended(record, items, self.settings.max_messages_per_thread)
        if not record.response.store:
            # Never retrievable nor continued (404, as the API answers): kept, it would only
            # hold memory (its output whole) until max_responses pushed it out.
            self.store.responses.discard(record.response.id)

    def stream_from(self, response_id: str, starting_after: int | None) -> tuple[EventLog, int]:
        """The log to re-stream and the first sequence number to send."""
        record = self.get(response_id)
        if not record.response.background:
            raise APIError(
                400, "This response cannot be streamed because it was not created with "
                "background=true."
            )  # fmt: skip
        window = self.settings.stream_window_s
        if asyncio.get_running_loop().time() - record.created > window:
            raise APIError(
                400,
                "This response can no longer be streamed because it is more than "
                f"{window / 60:g} minutes old.",
            )
        if starting_after is not None and starting_after < -1:
            raise APIError(400, "starting_after must be >= -1.", param="starting_after")
        return record.log, 0 if starting_after is None else starting_after + 1

    def cancel(self, response_id: str) -> Response:
        record = self.get(response_id)
        response = record.response
        if not response.background:
            raise APIError(
                400, "Only responses created with background=true can be cancelled.", param=None
            )
        if response.status == "cancelled":
            return response  # idempotent (background guide)
        if response.status in TERMINAL:
            raise APIError(400, f"Cannot cancel a response with status '{response.status}'.")
        response.status = "cancelled"
        if record.driver is not None:
            record.driver.cancel()
        return response

    def delete(self, response_id: str) -> dict[str, Any]:
        record = self.get(response_id)
        if record.task is not None:
            record.task.cancel()
        record.response.store = False  # hidden from now on; the LRU drops it in time
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    # -- conversations -------------------------------------------------------------------------

    def create_conversation(self, req: CreateConversationRequest | None) -> Conversation:
        req = req or CreateConversationRequest()
        check_view(req.items, INPUT_VIEW, "items")
        conversation = Conversation(
            id=new_id("conv"), created_at=now(), metadata=dict(req.metadata or {})
        )
        record = ConversationRecord(conversation)
        items = [_with_id(item) for item in req.items or ()]
        record.items.extend(items)
        fold_items(record.turn, items)
        record.context_chars = sum(text_chars(item) for item in items)
        self.store.conversations.put(conversation.id, record)
        return conversation

    def conversation(self, conversation_id: str, param: str | None = None) -> ConversationRecord:
        record = self.store.conversations.get(conversation_id)
        if record is None:
            raise APIError(
                404, f"Conversation with id '{clipped(conversation_id)}' not found.", param=param
            )
        return record

    def _stored(self, response_id: str, param: str | None) -> ResponseRecord:
        record = self.store.responses.get(response_id)
        if record is None or not record.response.store:
            kind = "Previous response" if param == "previous_response_id" else "Response"
            raise APIError(404, f"{kind} with id '{clipped(response_id)}' not found.", param=param)
        return record


def _new_response(
    req: CreateResponseRequest,
    background: bool,
    store: bool,
    conversation: ConversationRecord | None,
) -> Response:
    return Response(
        id=new_id("resp"),
        created_at=now(),
        status="queued" if background else "in_progress",
        background=background,
        conversation=(
            ConversationId(id=conversation.conversation.id) if conversation is not None else None
        ),
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        model=req.model,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id,
        store=store,
        temperature=1.0 if req.temperature is None else req.temperature,
        text=req.text or {"format": {"type": "text"}, "verbosity": "medium"},
        tool_choice=req.tool_choice or "auto",
        tools=list(req.tools),
        top_p=1.0 if req.top_p is None else req.top_p,
        truncation=req.truncation or "disabled",
        user=req.user,
        metadata=dict(req.metadata or {}),
    )


def _with_id(item: dict[str, Any]) -> dict[str, Any]:
    if "id" in item:
        return item
    prefix = {"function_call_output": "fco", "function_call": "fc"}.get(item.get("type", ""))
    return {"id": new_id(prefix or "msg"), "type": "message", **item}


def _ended(record: ResponseRecord, items: list[dict[str, Any]], max_items: int) -> None:
    """A response finished: its calls join its turn; a conversation takes in its items (the
    latest ``max_items`` kept, as a thread keeps its latest messages)."""
    response = record.response
    output: list[dict[str, Any]] = msgspec.to_builtins(response.output)
    fold_items(record.turn, output)
    record.context_chars += sum(text_chars(item) for item in output)
    conversation = record.conversation
    if conversation is not None and response.status in ("completed", "incomplete"):
        added = [_with_id(item) for item in items] + output
        conversation.items.extend(added)
        del conversation.items[:-max_items]
        conversation.turn = record.turn.copy()
        conversation.context_chars = record.context_chars
