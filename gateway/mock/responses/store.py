"""Stored responses and conversations of one simulator app, bounded like the Assistants store.

A :class:`ResponseRecord` holds the served ``Response``, its :class:`EventLog` (every frame of a
background response, for re-streaming), the scenario it ran, and where its turn stands after it
(:class:`~gateway.mock.turns.Turn`, with the context size) so a follow-up naming it in
``previous_response_id`` continues the same turn. A :class:`ConversationRecord` holds a
conversation's items and the same turn state. Both live in :class:`~gateway.mock.store.LRUStore`
maps (``max_responses`` / ``max_conversations``, ``ttl_s``); evicting a response cancels its
driver. A background response's frames are kept only while it can be re-streamed: each creation
releases those of finished responses older than the window (oldest first, amortised O(1)); the
``Response`` object itself stays retrievable.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from gateway.mock.eventlog import EventLog
from gateway.mock.responses.objects import Conversation, Response
from gateway.mock.settings import MockSettings
from gateway.mock.store import LRUStore
from gateway.mock.turns import Turn

if TYPE_CHECKING:
    from gateway.mock.responses.driver import ResponseDriver

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
        self.driver: ResponseDriver | None = None


class ConversationRecord:
    """A conversation, its items in order, and its turn state."""

    __slots__ = ("context_chars", "conversation", "items", "turn")

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.items: list[dict[str, object]] = []
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
        self._window = settings.stream_window_s
        self._retained: deque[ResponseRecord] = deque()

    def add(self, record: ResponseRecord) -> None:
        """Store ``record``; release the frames of background responses past the window."""
        retained = self._retained
        while retained and record.created - retained[0].created > self._window:
            if not retained[0].log.release():
                break  # still generating or read: retried at the next creation
            retained.popleft()
        self.responses.put(record.response.id, record)
        if record.log.retain:
            retained.append(record)


def _stop(record: ResponseRecord) -> None:
    if record.task is not None:
        record.task.cancel()
