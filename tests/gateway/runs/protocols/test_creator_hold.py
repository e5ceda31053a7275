"""``CreatorHold`` without sockets: the creator's copy of chat rounds, each event with its own
position, the text said with a round's first call, the usage of the rounds answered."""

from __future__ import annotations

import json
from typing import Any

from gateway.hub import HubEvent, Position
from gateway.runs.protocols import CHAT
from gateway.runs.protocols.creator_hold import CreatorHold
from parsers.sse import ServerSentEvent

CALL = {"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"}}  # fmt: skip


def _event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> HubEvent:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
             "model": "m", "choices": choices, **extra}  # fmt: skip
    data = json.dumps(chunk).encode()
    typed, _ = CHAT.decode(ServerSentEvent(data_bytes=data))
    return HubEvent("message", data, typed)


def _usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
            **extra}  # fmt: skip


def _at(seq: int) -> Position:
    return Position("e", seq)


def test_events_before_the_turn_pass_whole_and_the_rest_is_held_with_its_positions() -> None:
    hold = CreatorHold(CHAT)
    role = _event({"role": "assistant", "content": None})
    batch = [role, _event({"role": "assistant", "tool_calls": [CALL]}), _event({}, "tool_calls")]
    assert hold.copy(batch, _at(4)) == [(role, _at(4))]
    assert hold.copy([_event(None, usage=_usage(1, 1))], _at(7)) == []
    released = hold.release(answered=False)
    assert [at for _, at in released] == [_at(5), _at(6), _at(7)]
    assert [event for event, _ in released] == [*batch[1:], _event(None, usage=_usage(1, 1))]
    assert hold.copy([role], None) == [(role, None)]  # the next round: nothing held


def test_text_said_with_the_first_call_is_given_at_once_its_calls_held() -> None:
    hold = CreatorHold(CHAT)
    turn = _event({"role": "assistant", "content": "Let me check. ", "tool_calls": [CALL]})
    [(text, at)] = hold.copy([turn], _at(0))
    assert at is None  # the event at _at(0) is whole only with its calls: they carry it
    chunk = json.loads(text.data)
    assert chunk["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": "Let me check. "},
         "finish_reason": None}
    ]  # fmt: skip
    assert {k: v for k, v in chunk.items() if k != "choices"} == {
        k: v for k, v in json.loads(turn.data).items() if k != "choices"
    }
    [(calls, at)] = hold.release(answered=False)
    assert at == _at(0)
    assert json.loads(calls.data)["choices"][0]["delta"] == {"tool_calls": [CALL]}


def test_usage_of_answered_rounds_is_added_to_the_creators_next_usage() -> None:
    hold = CreatorHold(CHAT)
    details = {"prompt_tokens_details": {"cached_tokens": 8}}
    hold.copy([_event({"tool_calls": [CALL]}), _event(None, usage=_usage(40, 10, **details))], None)
    hold.release(answered=True)
    hold.copy([_event({"tool_calls": [CALL]}), _event(None, usage=_usage(45, 1))], None)
    hold.release(answered=True)
    text = _event({"content": "Sunny."}, usage=None)
    last = _event(None, usage=_usage(50, 5, prompt_tokens_details={"cached_tokens": 32}))
    [(passed, _), (billed, _)] = hold.copy([text, last], None)
    assert passed is text  # no usage: its bytes as they came
    assert json.loads(billed.data)["usage"] == _usage(135, 16, **{
        "prompt_tokens_details": {"cached_tokens": 40}
    })  # fmt: skip


def _roles(placed: list[tuple[HubEvent, Position | None]]) -> list[str]:
    return [
        choice["delta"]["role"]
        for event, _ in placed
        for choice in json.loads(event.data)["choices"]
        if choice["delta"].get("role")
    ]


def test_a_role_named_with_answered_calls_reaches_the_creator_with_the_next_round() -> None:
    # OpenAI and the simulator name the role in the delta of a round's first call: that chunk
    # is held, and dropped once the round is answered; the next round's role was taken out as
    # a repetition, so the creator's message had no role at all.
    hold = CreatorHold(CHAT)
    for _ in range(2):
        turn = _event({"role": "assistant", "content": None, "tool_calls": [CALL]})
        assert hold.copy([turn, _event({}, "tool_calls")], _at(0)) == []
        assert hold.release(answered=True) == []
    answer = _event({"role": "assistant", "content": "Sunny."})
    again = _event({"role": "assistant", "content": " Dry."})
    given = hold.copy([answer, again, _event({}, "stop")], _at(4))
    assert given[0] == (answer, _at(4))  # its bytes as they came
    assert _roles(given) == ["assistant"]  # once: the SDK joins repeated roles


def test_a_role_named_with_calls_left_to_the_app_reaches_the_creator_once() -> None:
    hold = CreatorHold(CHAT)
    turn = _event({"role": "assistant", "content": None, "tool_calls": [CALL]})
    hold.copy([turn], _at(0))
    hold.release(answered=True)
    turn = _event({"role": "assistant", "content": None, "tool_calls": [CALL]})
    given = hold.copy([turn], _at(1)) + hold.release(answered=False)
    assert given == [(turn, _at(1))] and _roles(given) == ["assistant"]
    assert _roles(hold.copy([_event({"role": "assistant", "content": "x"})], None)) == []
