"""One chat completion generated as a task of the shared engine, its chunks in an EventLog.

Theory of operation. The script (reference responses-and-chat.md §4.1)::

    tool round:  a role chunk carrying call 0's head, its argument fragments; then for each
                 further call its head and fragments; finish_reason "tool_calls"
    answer:      a role chunk, content deltas, then the ending:
                 completed: finish_reason "stop";  incomplete: all deltas, "length"
                 failed:    half the deltas, an error chunk, then [DONE] (llama.cpp's shape, §5)
                 error:     half the deltas, an error chunk and the end of the body, no [DONE]
                 drop:      half the deltas, then the connection is cut
    then, with stream_options.include_usage, the usage chunk (empty choices); then data: [DONE]

``drop_mid_tool_call`` cuts after the first argument fragment of the first round,
``drop_after_requires_action`` after the ``tool_calls`` finish chunk (before usage and [DONE]),
``mock_drop_after`` after the given chunk. Chat has no server-side state to keep: generation stops
once nobody reads the stream, and a non-streamed completion is the same script with nobody
reading from the start, its object built at the end.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.mock.chat.frames import DONE, ChunkFramer
from gateway.mock.eventlog import EventLog
from gateway.mock.fakeargs import fake_arguments
from gateway.mock.ids import new_id
from gateway.mock.lifecycle import split_text
from gateway.mock.pacing import Pacer, Stopped
from gateway.mock.requests import FunctionDefinition
from gateway.mock.scenarios import Scenario
from gateway.mock.settings import MockSettings
from gateway.mock.textgen import TextGenerator
from gateway.mock.wire import Wire

__all__ = ["ChatDriver", "ChatPlan"]

_ARG_FRAGMENTS = 3
_ERROR = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": "server_error",
}


class ChatPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one completion does, decided from its messages (``service.py``)."""

    scenario: Scenario
    calls: list[FunctionDefinition] = []
    quoted: list[tuple[str, str]] = []
    first_round: bool = True
    prompt_tokens: int = 0
    include_usage: bool = False


class ChatDriver:
    """Generates one completion; see the module docstring. ``completion`` is the final object."""

    def __init__(
        self,
        *,
        settings: MockSettings,
        completion: dict[str, Any],
        log: EventLog,
        plan: ChatPlan,
        wire: Wire,
        framer: ChunkFramer,
        streamed: bool,
    ) -> None:
        self.settings = settings
        self.completion = completion
        self.log = log
        self.plan = plan
        self.framer = framer
        self.pacer = Pacer(
            log,
            delay=settings.delay_ms / 1000,
            yield_every=settings.yield_every,
            stop_unread=streamed,
        )
        self._text = TextGenerator(settings.seed)
        self._completion_tokens = 0
        self._trailer = DONE
        if wire.drop_after is not None:
            log.cut_after = wire.drop_after

    async def main(self) -> None:
        try:
            await self._script()
        except Stopped:
            self._trailer = b""
        finally:
            self.log.close(self._trailer)

    def _emit(self, frame: bytes) -> None:
        log = self.log
        if log.wanted:
            log.append(frame)
        else:
            log.skip()

    async def _script(self) -> None:
        plan, pacer = self.plan, self.pacer
        if plan.scenario.slow_start:
            await pacer.pause(self.settings.slow_start_ms / 1000)
        pacer.check()
        if plan.calls:
            await self._tool_round()
        else:
            await self._answer()

    async def _tool_round(self) -> None:
        framer, log = self.framer, self.log
        drop_at = self.plan.scenario.drop_at if self.plan.first_round else None
        rng = self._text.rng
        calls = []
        for index, function in enumerate(self.plan.calls):
            arguments = msgspec.json.encode(fake_arguments(function.parameters, rng)).decode()
            call_id = new_id("call")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": function.name, "arguments": arguments},
                }
            )
            self._emit(framer.call_head(index, call_id, function.name, first=index == 0))
            for piece in split_text(arguments, _ARG_FRAGMENTS):
                self._emit(framer.call_fragment(index, piece))
                if drop_at == "tool_arguments":
                    log.cut()
                await self.pacer.after_delta()
            self._completion_tokens += 4 + len(arguments) // 4
        self._emit(framer.finish("tool_calls"))
        if drop_at == "requires_action":
            log.cut()
        self._end({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")

    async def _answer(self) -> None:
        settings, ending, framer = self.settings, self.plan.scenario.ending, self.framer
        self._emit(framer.role())
        parts: list[str] = []
        for name, output in self.plan.quoted:
            await self._delta(parts, f"{name} returned: {output}\n\n")
        half = settings.deltas // 2
        full = ending in ("completed", "incomplete")
        await self._generate(parts, settings.deltas if full else half)
        if ending in ("failed", "error"):
            self._emit(framer.error(_ERROR))
            self.completion["error"] = _ERROR
            if ending == "error":
                self._trailer = b""
            return
        if ending == "drop":
            self.log.cut()
            await self._generate(parts, settings.deltas - half)
        reason = "length" if ending == "incomplete" else "stop"
        self._emit(framer.finish(reason))
        self._end({"role": "assistant", "content": "".join(parts)}, reason)

    def _end(self, message: dict[str, Any], reason: str) -> None:
        prompt, completion = self.plan.prompt_tokens, self._completion_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        message = {**message, "refusal": None, "annotations": []}
        self.completion["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
        ]
        self.completion["usage"] = usage
        if self.plan.include_usage:
            self._emit(self.framer.usage(usage))

    async def _generate(self, parts: list[str], count: int) -> None:
        """``count`` content deltas; without a delay, a chunk at a time (``ChatDriver`` hot path)."""
        words = self.settings.tokens_per_delta
        chunk = self.settings.yield_every
        log, content = self.log, self.framer.content
        while count > 0:
            first = not parts or parts[-1].endswith("\n")
            fragments = self._text.fragments(min(count, chunk), words, first=first)
            count -= len(fragments)
            self._completion_tokens += len(fragments) * words
            if self.pacer.delay:
                for text in fragments:
                    await self._delta(parts, text)
                continue
            parts.extend(fragments)
            if log.wanted:
                log.extend([content(text) for text in fragments])
            else:
                log.skip(len(fragments))
            await self.pacer.after_batch(len(fragments))

    async def _delta(self, parts: list[str], text: str) -> None:
        parts.append(text)
        log = self.log
        if log.wanted:
            log.append(self.framer.content(text))
        else:
            log.skip()
        await self.pacer.after_delta()
