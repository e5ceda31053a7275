"""Events nested deeper than Python's stack: msgspec recurses once per level and raised
``RecursionError``, which no caller expected (a relay died on it, a request got a 500). Each
decoder reports them as it reports any undecodable event."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from parsers.assistants import decode_event as decode_assistants
from parsers.chat import decode_chunk
from parsers.errors import EventDecodeError
from parsers.responses import decode_event as decode_responses
from parsers.sse import ServerSentEvent

DEEP = b"[" * 100_000 + b"]" * 100_000

CASES: dict[str, tuple[Callable[[ServerSentEvent], object], ServerSentEvent]] = {
    "assistants": (
        decode_assistants,
        ServerSentEvent("thread.message.delta", b'{"id":"msg_1","delta":%s}' % DEEP),
    ),
    "assistants, a known field": (
        decode_assistants,
        ServerSentEvent("thread.run.created", b'{"id":"run_1","metadata":%s}' % DEEP),
    ),
    "responses": (
        decode_responses,
        ServerSentEvent(
            "response.output_text.delta",
            b'{"type":"response.output_text.delta","sequence_number":1,"x":%s}' % DEEP,
        ),
    ),
    "responses, no type": (decode_responses, ServerSentEvent("message", b'{"x":%s}' % DEEP)),
    "chat": (decode_chunk, ServerSentEvent("message", b'{"id":"c","choices":%s}' % DEEP)),
}


@pytest.mark.parametrize(("decode", "sse"), CASES.values(), ids=CASES.keys())
def test_nesting_past_the_stack_is_an_event_decode_error(
    decode: Callable[[ServerSentEvent], object], sse: ServerSentEvent
) -> None:
    with pytest.raises(EventDecodeError):
        decode(sse)
