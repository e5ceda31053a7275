"""Realistic generated Assistants run streams for the benchmarks.

``make_run_stream(n_events, seed=0)`` returns the SSE bytes of one long run laid out like the
spec's examples (assistants-stream.md §2): run created/queued/in_progress, then rounds of
tool-call steps (streamed as ``thread.run.step.delta`` argument fragments) and message-creation
steps whose text arrives as ``thread.message.delta`` token fragments (the bulk of the events),
each closed by its full ``completed`` object, and finally ``thread.run.completed`` and
``[DONE]``. Payloads are schema-complete and byte-for-byte what OpenAI's encoder would send
(compact JSON, non-ASCII kept as UTF-8). The same ``seed`` always gives the same bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["make_run_stream"]

_WORDS = [
    "the",
    "run",
    "stream",
    "carries",
    "every",
    "event",
    "of",
    "a",
    "thread",
    "as",
    "the",
    "model",
    "writes",
    "its",
    "answer",
    "token",
    "by",
    "token",
    "while",
    "tools",
    "are",
    "called",
    "and",
    "results",
    "come",
    "back",
    "so",
    "a",
    "gateway",
    "must",
    "parse",
    "fan",
    "out",
    "and",
    "resume",
    "quickly",
    "under",
    "load",
    "with",
    "many",
    "subscribers",
    "watching",
    "at",
    "once",
    "Oslo",
    "Bergen",
    "café",
    "naïve",
    "4",
    "°C",
]
_RUN_ID = "run_bench0000000000000000"
_THREAD_ID = "thread_bench00000000000000"
_ASSISTANT_ID = "asst_bench0000000000000000"
_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": False,
    },
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _frame(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {_dumps(data)}\n\n"


def _run(status: str, now: int, usage: dict[str, int] | None = None) -> dict[str, Any]:
    terminal = status == "completed"
    return {
        "id": _RUN_ID,
        "object": "thread.run",
        "created_at": 1730000000,
        "assistant_id": _ASSISTANT_ID,
        "thread_id": _THREAD_ID,
        "status": status,
        "started_at": None if status == "queued" else 1730000001,
        "expires_at": None if terminal else 1730000600,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": now if terminal else None,
        "required_action": None,
        "last_error": None,
        "model": "gpt-4o",
        "instructions": "You are a helpful assistant. Answer with care.",
        "tools": [_TOOL],
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "max_completion_tokens": None,
        "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "incomplete_details": None,
        "usage": usage,
        "response_format": "auto",
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }


def _step(
    step_id: str, status: str, details: dict[str, Any], now: int, usage: dict[str, int] | None
) -> dict[str, Any]:
    return {
        "id": step_id,
        "object": "thread.run.step",
        "created_at": now,
        "run_id": _RUN_ID,
        "assistant_id": _ASSISTANT_ID,
        "thread_id": _THREAD_ID,
        "type": details["type"],
        "status": status,
        "cancelled_at": None,
        "completed_at": now if status == "completed" else None,
        "expired_at": None,
        "failed_at": None,
        "last_error": None,
        "step_details": details,
        "usage": usage,
        "metadata": {},
    }


def _message(message_id: str, status: str, text: str | None, now: int) -> dict[str, Any]:
    content = [] if text is None else [{"type": "text", "text": {"value": text, "annotations": []}}]
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": now,
        "assistant_id": _ASSISTANT_ID,
        "thread_id": _THREAD_ID,
        "run_id": _RUN_ID,
        "status": status,
        "incomplete_details": None,
        "incomplete_at": None,
        "completed_at": now if status == "completed" else None,
        "role": "assistant",
        "content": content,
        "attachments": [],
        "metadata": {},
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_round(rng: random.Random, n: int, now: int, out: list[str]) -> int:
    step_id = f"step_tool{n:018d}"
    call_id = f"call_{n:020d}"
    empty = {"type": "tool_calls", "tool_calls": []}
    out.append(_frame("thread.run.step.created", _step(step_id, "in_progress", empty, now, None)))
    out.append(
        _frame("thread.run.step.in_progress", _step(step_id, "in_progress", empty, now, None))
    )
    arguments = _dumps({"city": rng.choice(("Oslo", "Bergen", "Tromsø", "Trondheim"))})
    pieces = [arguments[i : i + 3] for i in range(0, len(arguments), 3)]
    first = {"name": "get_weather", "arguments": "", "output": None}
    calls: list[dict[str, Any]] = [
        {"index": 0, "id": call_id, "type": "function", "function": first}
    ]
    calls += [{"index": 0, "type": "function", "function": {"arguments": p}} for p in pieces]
    for call in calls:
        delta = {"step_details": {"type": "tool_calls", "tool_calls": [call]}}
        out.append(
            _frame(
                "thread.run.step.delta",
                {"id": step_id, "object": "thread.run.step.delta", "delta": delta},
            )
        )
    done = {
        "type": "tool_calls",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": arguments,
                    "output": '{"temp_c":4}',
                },
            }
        ],
    }
    out.append(
        _frame("thread.run.step.completed", _step(step_id, "completed", done, now, _usage(80, 16)))
    )
    return 3 + len(calls)


def _message_round(rng: random.Random, n: int, budget: int, now: int, out: list[str]) -> int:
    step_id = f"step_msg{n:019d}"
    message_id = f"msg_{n:020d}"
    creation = {"type": "message_creation", "message_creation": {"message_id": message_id}}
    out.append(
        _frame("thread.run.step.created", _step(step_id, "in_progress", creation, now, None))
    )
    out.append(
        _frame("thread.run.step.in_progress", _step(step_id, "in_progress", creation, now, None))
    )
    out.append(_frame("thread.message.created", _message(message_id, "in_progress", None, now)))
    out.append(_frame("thread.message.in_progress", _message(message_id, "in_progress", None, now)))
    deltas = max(1, min(budget, rng.randint(150, 600)))
    fragments: list[str] = []
    for i in range(deltas):
        token = rng.choice(_WORDS)
        fragment = token if i == 0 else (" " + token if rng.random() < 0.8 else token[:3])
        if rng.random() < 0.05:
            fragment += rng.choice((".", ",", "\n\n"))
        fragments.append(fragment)
        text: dict[str, Any] = {"value": fragment}
        if i == 0:
            text["annotations"] = []
        delta = {"content": [{"index": 0, "type": "text", "text": text}]}
        out.append(
            _frame(
                "thread.message.delta",
                {"id": message_id, "object": "thread.message.delta", "delta": delta},
            )
        )
    full = "".join(fragments)
    out.append(_frame("thread.message.completed", _message(message_id, "completed", full, now)))
    out.append(
        _frame(
            "thread.run.step.completed",
            _step(step_id, "completed", creation, now, _usage(120, deltas)),
        )
    )
    return 6 + deltas


def make_run_stream(n_events: int, seed: int = 0) -> bytes:
    """SSE bytes of one run with at least ``n_events`` events (about 95% message deltas)."""
    rng = random.Random(seed)
    out: list[str] = []
    now = 1730000001
    count = 0
    for status in ("created", "queued", "in_progress"):
        out.append(
            _frame(
                f"thread.run.{status}",
                _run("queued" if status != "in_progress" else "in_progress", now),
            )
        )
        count += 1
    n = 0
    while count < n_events - 2:
        if n % 3 == 1:
            count += _tool_round(rng, n, now, out)
        count += _message_round(rng, n, n_events - 2 - count, now, out)
        n += 1
        now += 1
    out.append(_frame("thread.run.completed", _run("completed", now, _usage(1000, count))))
    out.append("event: done\ndata: [DONE]\n\n")
    return "".join(out).encode()
