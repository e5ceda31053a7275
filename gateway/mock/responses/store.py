"""Stored responses and conversations of one simulator app, bounded like the Assistants store.

A :class:`ResponseRecord` holds the served ``Response``, its :class:`EventLog` (every frame of a
background response, for re-streaming), the scenario it ran, and where its turn stands after it
(:class:`~gateway.mock.turns.Turn`, with the context size) so a follow-up naming it in
``previous_response_id`` continues the same turn. A :class:`ConversationRecord` holds a
conversation's items and the same turn state. Both live in :class:`~gateway.mock.store.LRUStore`
maps (``max_responses`` / ``max_conversations``, ``ttl_s``); evicting a response cancels its
driver.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.mock.eventlog import EventLog
from gateway.mock.responses.objects import Conversation, Response
from gateway.mock.settings import MockSettings
from gateway.mock.store import LRUStore
from gateway.mock.turns import Turn

__all__ = ["ConversationRecord", "ResponseRecord", "ResponseStore"]


class ResponseRecord:
    """One response and what its stream and its follow-ups need."""

    __slots__ = ("context_chars", "conversation", "created", "driver", "log", "response",
                 "scenario", "task", "turn")  # fmt: skip

    def __init__(
        self,
        response: Response,
        log: EventLog,
        *,
        scenario: str,
        turn: Turn,
        context_chars: int,
        created: float,
        conversation: ConversationRecord | None,
    ) -> None:
        self.response = response
        self.log = log
        self.scenario = scenario
        self.turn = turn
        self.context_chars = context_chars
        self.created = created  # loop time, for the re-streaming window
        self.conversation = conversation
        self.task: asyncio.Task[None] | None = None
        self.driver: Any = None  # the ResponseDriver, set once created


class ConversationRecord:
    """A conversation, its items in order, and its turn state."""

    __slots__ = ("context_chars", "conversation", "items", "turn")

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.items: list[dict[str, Any]] = []
        self.turn = Turn()
        self.context_chars = 0


class ResponseStore:
    """Responses and conversations, each map capped and aged out."""

    def __init__(self, settings: MockSettings) -> None:
        self.responses: LRUStore[ResponseRecord] = LRUStore(
            max_items=settings.max_responses, ttl=settings.ttl_s, on_evict=_stop
        )
        self.conversations: LRUStore[ConversationRecord] = LRUStore(
            max_items=settings.max_conversations, ttl=settings.ttl_s
        )


def _stop(record: ResponseRecord) -> None:
    if record.task is not None:
        record.task.cancel()
