"""Turn: rounds, quoted outputs and unanswered calls, from Responses items and chat messages."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.mock.chat.requests import ChatMessage, fold_messages
from gateway.mock.responses.service import fold_items
from gateway.mock.turns import Turn


def messages(*raw: dict[str, Any]) -> list[ChatMessage]:
    return msgspec.convert(raw, list[ChatMessage])


def test_items_rounds_and_quotes() -> None:
    turn = Turn()
    fold_items(
        turn,
        [
            {"role": "user", "content": "old"},
            {"type": "function_call", "call_id": "c0", "name": "f"},
            {"type": "function_call_output", "call_id": "c0", "output": "x"},
            {"type": "message", "role": "user", "content": "new"},
            {"type": "function_call", "call_id": "c1", "name": "a"},
            {"type": "function_call", "call_id": "c2", "name": "b"},
            {"type": "function_call_output", "call_id": "c2", "output": {"n": 1}},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call", "call_id": "c3", "name": "a"},
        ],
    )
    assert turn.rounds == 2  # parallel calls are one round; the old turn is forgotten
    assert turn.quoted == [("b", '{"n":1}'), ("a", "one")]
    assert turn.unanswered == ["c3"] and turn.unknown == []
    copy = turn.copy()
    copy.output("c3", "three")
    assert turn.unanswered == ["c3"] and copy.unanswered == []


def test_chat_messages() -> None:
    turn = Turn()
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chars = fold_messages(
        turn,
        messages(
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "out"},
            {"role": "tool", "tool_call_id": "c9", "content": "?"},
        ),
    )
    assert chars == len("be brief") + 2 + 3 + 1
    assert (turn.rounds, turn.quoted, turn.unknown) == (1, [("f", "out")], ["c9"])


def test_a_user_message_does_not_answer_calls_left_open() -> None:
    # OpenAI refuses a conversation whose function calls were followed by anything but their
    # outputs (responses-and-chat.md §3.3); a new user message used to forget them.
    items = Turn()
    fold_items(
        items,
        [
            {"type": "function_call", "call_id": "c1", "name": "f"},
            {"type": "message", "role": "user", "content": "go on"},
        ],
    )
    assert items.unanswered == ["c1"]
    chat = Turn()
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    fold_messages(
        chat,
        messages(
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "user", "content": "go on"},
        ),
    )
    assert chat.unanswered == ["c1"]
