"""Realistic generated Responses and Chat Completions streams for the benchmarks.

``make_response_stream(n_events, seed=0)``: one long response laid out as the reference shows
(responses-and-chat.md §1.1, §1.4): created, in_progress, then rounds of a reasoning item with a
streamed summary, a function call with argument deltas and a message whose text arrives as
``response.output_text.delta`` token fragments (the bulk of the events), every delta with
``obfuscation`` and the text deltas with ``logprobs: []``, and response.completed; ``event:`` lines
and ``sequence_number`` from 0, as OpenAI sends them.

``make_chat_stream(n_events, seed=0)``: one chat completion as data-only chunks: a role chunk,
content chunks with ``obfuscation`` (the bulk), a round of tool-call chunks every so often, the
finish chunk, the ``include_usage`` chunk and ``[DONE]``. Same ``seed``, same bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

from _streams import _WORDS

__all__ = ["make_chat_stream", "make_response_stream"]

_RESPONSE_ID = "resp_68d9303e0ef4819e9abaed38fac5de4f03aa6e5a972b3b23"
_ENVELOPE: dict[str, Any] = {
    "id": _RESPONSE_ID,
    "object": "response",
    "created_at": 1756310400,
    "status": "in_progress",
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-5-2025-08-07",
    "output": [],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    ],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": None,
    "user": None,
    "metadata": {},
}


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _obfuscation(rng: random.Random) -> str:
    return "".join(
        rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789", k=rng.randint(4, 16))
    )


def make_response_stream(n_events: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    frames: list[str] = []
    output: list[dict[str, Any]] = []

    def emit(type_: str, **fields: Any) -> None:
        payload = _dump({"type": type_, "sequence_number": len(frames), **fields})
        frames.append(f"event: {type_}\ndata: {payload}\n\n")

    emit("response.created", response=_ENVELOPE)
    emit("response.in_progress", response=_ENVELOPE)
    round_ = 0
    while len(frames) < n_events - 1:
        base = f"{round_:04d}68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23"
        index = len(output)
        rs_id = f"rs_{base}"
        emit(
            "response.output_item.added",
            output_index=index,
            item={"id": rs_id, "type": "reasoning", "summary": []},
        )
        emit(
            "response.reasoning_summary_part.added",
            item_id=rs_id,
            output_index=index,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )
        summary = [rng.choice(_WORDS) + " " for _ in range(12)]
        for piece in summary:
            emit(
                "response.reasoning_summary_text.delta",
                item_id=rs_id,
                output_index=index,
                summary_index=0,
                delta=piece,
                obfuscation=_obfuscation(rng),
            )
        text = "".join(summary)
        emit(
            "response.reasoning_summary_text.done",
            item_id=rs_id,
            output_index=index,
            summary_index=0,
            text=text,
        )
        emit(
            "response.reasoning_summary_part.done",
            item_id=rs_id,
            output_index=index,
            summary_index=0,
            part={"type": "summary_text", "text": text},
        )
        item: dict[str, Any] = {
            "id": rs_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}],
        }
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)

        index += 1
        fc_id = f"fc_{base}"
        call = {
            "id": fc_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": f"call_{base[:24]}",
            "name": "get_weather",
        }
        emit("response.output_item.added", output_index=index, item=call)
        pieces = ['{"', "location", '":"', rng.choice(["Oslo", "Bergen", "Tromsø"]), '"}']
        for piece in pieces:
            emit(
                "response.function_call_arguments.delta",
                item_id=fc_id,
                output_index=index,
                delta=piece,
                obfuscation=_obfuscation(rng),
            )
        arguments = "".join(pieces)
        emit(
            "response.function_call_arguments.done",
            item_id=fc_id,
            output_index=index,
            arguments=arguments,
        )
        item = {**call, "status": "completed", "arguments": arguments}
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)

        index += 1
        msg_id = f"msg_{base}"
        emit(
            "response.output_item.added",
            output_index=index,
            item={
                "id": msg_id,
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            },
        )
        emit(
            "response.content_part.added",
            item_id=msg_id,
            output_index=index,
            content_index=0,
            part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
        )
        tokens = [(" " if i else "") + rng.choice(_WORDS) for i in range(400)]
        for token in tokens:
            emit(
                "response.output_text.delta",
                item_id=msg_id,
                output_index=index,
                content_index=0,
                delta=token,
                logprobs=[],
                obfuscation=_obfuscation(rng),
            )
        text = "".join(tokens)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        emit(
            "response.output_text.done",
            item_id=msg_id,
            output_index=index,
            content_index=0,
            text=text,
            logprobs=[],
        )
        emit(
            "response.content_part.done",
            item_id=msg_id,
            output_index=index,
            content_index=0,
            part=part,
        )
        item = {
            "id": msg_id,
            "type": "message",
            "status": "completed",
            "content": [part],
            "role": "assistant",
        }
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)
        round_ += 1
    usage = {
        "input_tokens": 371,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(frames),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 371 + len(frames),
    }
    emit(
        "response.completed",
        response={**_ENVELOPE, "status": "completed", "output": output, "usage": usage},
    )
    return "".join(frames).encode()


def make_chat_stream(n_events: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    head = {
        "id": "chatcmpl-C1aT7xQ0bench00000000000000",
        "object": "chat.completion.chunk",
        "created": 1756310400,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
    }
    frames: list[str] = []

    def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
        frames.append(f"data: {_dump({**head, 'choices': choices, 'usage': None, **extra})}\n\n")

    def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

    emit(
        delta({"role": "assistant", "content": "", "refusal": None}), obfuscation=_obfuscation(rng)
    )
    call = 0
    while len(frames) < n_events - 3:
        if len(frames) % 500 == 0:
            emit(
                delta(
                    {
                        "tool_calls": [
                            {
                                "index": call,
                                "id": f"call_{call:024d}",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ),
                obfuscation=_obfuscation(rng),
            )
            for piece in ['{"', "location", '":"', rng.choice(["Oslo", "Bergen"]), '"}']:
                emit(
                    delta({"tool_calls": [{"index": call, "function": {"arguments": piece}}]}),
                    obfuscation=_obfuscation(rng),
                )
            call += 1
            continue
        emit(delta({"content": " " + rng.choice(_WORDS)}), obfuscation=_obfuscation(rng))
    emit(delta({}, "stop"), obfuscation="")
    usage = {
        "prompt_tokens": 371,
        "completion_tokens": len(frames),
        "total_tokens": 371 + len(frames),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    frames.append(
        f"data: {_dump({**head, 'choices': [], 'usage': usage, 'obfuscation': _obfuscation(rng)})}\n\n"
    )
    frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()
