"""The simulated Chat Completions operation, independent of HTTP.

Chat is stateless: where a request stands in its turn is read from its ``messages``
(``turns.py``): assistant messages with ``tool_calls`` are the rounds done, ``tool`` messages the
outputs, which the final answer quotes. A request that leaves a call without its ``tool`` message,
or answers a call that was never made, is a 400 with OpenAI's wording.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from gateway.mock.chat.driver import ChatDriver, ChatPlan
from gateway.mock.chat.frames import ChunkFramer
from gateway.mock.chat.requests import CreateChatRequest, fold_messages, function_definitions
from gateway.mock.engine import Engine
from gateway.mock.errors import APIError
from gateway.mock.eventlog import EventLog
from gateway.mock.ids import new_id
from gateway.mock.lifecycle import now
from gateway.mock.scenarios import round_tools, scenario_for_run
from gateway.mock.settings import MockSettings
from gateway.mock.turns import Turn
from gateway.mock.wire import http_refusal, request_scenario, request_wire

__all__ = ["ChatService"]

_MAX_LAG = 4_096
_PROMPT_BASE = 20


class ChatService:
    """Starts chat completions on the shared engine."""

    def __init__(self, settings: MockSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def create(self, req: CreateChatRequest, headers: Mapping[str, str]) -> ChatDriver:
        """Validate, plan and start a completion; its driver runs once the caller yields."""
        turn = Turn()
        chars = fold_messages(turn, req.messages)
        if turn.unknown:
            raise APIError(
                400,
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                "message with 'tool_calls'.",
                param="messages",
            )
        if turn.unanswered:
            raise APIError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(turn.unanswered)}",
                param="messages",
            )
        scenario = request_scenario(req.metadata, headers, self.settings.scenario)
        refusal = http_refusal(scenario, self.settings.retry_after_s)
        if refusal is not None:
            raise refusal
        functions = function_definitions(req.tools)
        scenario = scenario_for_run(scenario, functions)
        calling = turn.rounds < scenario.tool_rounds
        options = req.stream_options
        streamed = bool(req.stream)
        plan = ChatPlan(
            scenario=scenario,
            calls=round_tools(scenario, functions, turn.rounds) if calling else [],
            quoted=[] if calling else list(turn.quoted),
            first_round=turn.rounds == 0,
            prompt_tokens=_PROMPT_BASE + chars // 4,
            include_usage=streamed and options is not None and bool(options.include_usage),
        )
        wire = request_wire(self.settings, req.metadata, headers)
        completion: dict[str, Any] = {
            "id": "chatcmpl-" + new_id("x")[2:],
            "object": "chat.completion",
            "created": now(),
            "model": req.model,
            "choices": [],
            "usage": None,
            "service_tier": "default",
            "system_fingerprint": "fp_" + new_id("x")[2:12].lower(),
        }
        framer = ChunkFramer(
            completion_id=completion["id"],
            created=completion["created"],
            model=req.model,
            fingerprint=completion["system_fingerprint"],
            include_usage=plan.include_usage,
            obfuscate=options is None or options.include_obfuscation is not False,
            no_index=wire.no_index,
            rng=random.Random(self.settings.seed),
        )
        driver = ChatDriver(
            settings=self.settings,
            completion=completion,
            log=EventLog(retain=False, max_lag=_MAX_LAG),
            plan=plan,
            wire=wire,
            framer=framer,
            streamed=streamed,
        )
        self.engine.spawn(driver.main(), f"mock-chat {completion['id']}")
        return driver
