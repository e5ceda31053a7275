"""One response generated server-side, its events appended to its :class:`EventLog`.

Theory of operation. A :class:`ResponseDriver` runs as one task owned by the simulator's
:class:`~gateway.mock.engine.Engine`, whether or not anyone reads the stream (a background
response keeps generating after its client left, reference responses-and-chat.md §2.1). The
script follows the order of §1.4::

    response.created (queued when background) response.in_progress
    tool round:  per call: output_item.added function_call_arguments.delta... .done
                 output_item.done; then response.completed with the calls as output
    answer:      output_item.added content_part.added output_text.delta... then the ending:
                 completed:  output_text.done content_part.done output_item.done response.completed
                 incomplete: the same with the item ``incomplete``, then response.incomplete
                 failed:     half the deltas, response.failed (no output)
                 error:      half the deltas, an ``error`` event in the wire's nested shape (§1.5)
                             and the end of the stream; the response is ``failed``
                 drop:       half the deltas, the creator's connection cut; the rest goes on

The ``drop_*`` scenarios cut the creator's connection in the first tool round (after the first
argument fragment, or just before ``response.completed``); ``mock_drop_after`` cuts it after a
given sequence number. A cancel (``POST .../cancel``) stops the script at its next check point and
closes the stream without a further event (the API has no ``cancelled`` event, §1.4).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from gateway.mock.eventlog import EventLog
from gateway.mock.fakeargs import fake_arguments
from gateway.mock.ids import new_id
from gateway.mock.lifecycle import now, split_text
from gateway.mock.pacing import Pacer, Stopped
from gateway.mock.requests import FunctionDefinition
from gateway.mock.responses.frames import DONE, Framer, TextDeltas
from gateway.mock.responses.objects import (
    FunctionCallItem,
    MessageItem,
    OutputText,
    Response,
    ResponseError,
    ResponseIncompleteDetails,
    ResponseUsage,
)
from gateway.mock.scenarios import Scenario
from gateway.mock.settings import MockSettings
from gateway.mock.textgen import TextGenerator
from gateway.mock.wire import Wire

__all__ = ["TERMINAL", "ResponseDriver", "ResponsePlan"]

TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
_ARG_FRAGMENTS = 3
_SERVER_ERROR = ResponseError(
    code="server_error", message="An error occurred while processing your request."
)
_ERROR_EVENT = {
    "type": "server_error",
    "code": "server_error",
    "message": "The server had an error while processing your request.",
    "param": None,
}


_TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})


class ResponsePlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one response does, decided from its request and its turn (``service.py``)."""

    scenario: Scenario
    calls: list[FunctionDefinition] = []
    """Functions called in this response (a tool round); empty: the answer."""
    quoted: list[tuple[str, str]] = []
    """``(function, output)`` pairs the answer quotes first, verbatim."""
    first_round: bool = True
    input_tokens: int = 0


class ResponseDriver:
    """Generates one response; see the module docstring."""

    def __init__(
        self,
        *,
        settings: MockSettings,
        response: Response,
        log: EventLog,
        plan: ResponsePlan,
        wire: Wire,
        framer: Framer,
        on_end: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.response = response
        self.log = log
        self.plan = plan
        self.wire = wire
        self.framer = framer
        self._on_end = on_end
        self.pacer = Pacer(log, delay=settings.delay_ms / 1000, yield_every=settings.yield_every)
        self._text = TextGenerator(settings.seed)
        self._output_tokens = 0
        self._ended = False  # a terminal response.* event was emitted
        if wire.drop_after is not None:
            log.cut_after = wire.drop_after

    def cancel(self) -> None:
        """Stop at the next check point (the caller already set the status)."""
        self.pacer.cancel()

    async def main(self) -> None:
        trailer = b""
        try:
            await self._script()
            if self.wire.done and self._ended:
                trailer = DONE
        except Stopped:
            pass
        finally:
            if self.response.status not in TERMINAL:
                # Only reached when the task itself is cancelled (shutdown, eviction).
                self.response.status = "failed"
                self.response.error = _SERVER_ERROR
            self.log.close(trailer)
            self._on_end()

    # -- the script ------------------------------------------------------------------------------

    async def _script(self) -> None:
        response, plan = self.response, self.plan
        pacer = self.pacer
        if plan.scenario.slow_start:
            await pacer.pause(self.settings.slow_start_ms / 1000)
        pacer.check()
        self._emit_response("response.created")
        response.status = "in_progress"
        self._emit_response("response.in_progress")
        await pacer.flush()
        if plan.calls:
            await self._tool_round()
        else:
            await self._answer()

    async def _tool_round(self) -> None:
        response, framer, log = self.response, self.framer, self.log
        drop_at = self.plan.scenario.drop_at if self.plan.first_round else None
        rng = self._text.rng
        for function in self.plan.calls:
            arguments = msgspec.json.encode(fake_arguments(function.parameters, rng)).decode()
            item = FunctionCallItem(id=new_id("fc"), call_id=new_id("call"), name=function.name)
            index = len(response.output)
            response.output.append(item)
            self._emit("response.output_item.added", output_index=index, item=item)
            fields = b',"item_id":"%s","output_index":%d' % (item.id.encode(), index)
            for piece in split_text(arguments, _ARG_FRAGMENTS):
                if log.wanted:
                    frame = framer.delta(
                        "response.function_call_arguments.delta", log.next_seq, fields, piece
                    )
                    log.append(frame)
                else:
                    log.skip()
                if drop_at == "tool_arguments":
                    log.cut()
                await self._pace()
            item.arguments = arguments
            item.status = "completed"
            self._output_tokens += 4 + len(arguments) // 4
            self._emit(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=index,
                arguments=arguments,
                name=function.name,
            )
            self._emit("response.output_item.done", output_index=index, item=item)
        if drop_at == "requires_action":
            log.cut()
        self._finish("completed")
        self._emit_response("response.completed")

    async def _answer(self) -> None:
        response, settings, ending = self.response, self.settings, self.plan.scenario.ending
        item = MessageItem(id=new_id("msg"))
        index = len(response.output)
        response.output.append(item)
        self._emit("response.output_item.added", output_index=index, item=item)
        self._emit(
            "response.content_part.added",
            item_id=item.id,
            output_index=index,
            content_index=0,
            part=OutputText(),
        )
        deltas = TextDeltas(self.framer, item_id=item.id, output_index=index, content_index=0)
        parts: list[str] = []
        for quoted in self.plan.quoted:
            await self._delta(deltas, parts, f"{quoted[0]} returned: {quoted[1]}\n\n")
        half = settings.deltas // 2
        full = ending in ("completed", "incomplete")
        await self._generate(deltas, parts, settings.deltas if full else half)
        if ending == "drop":
            self.log.cut()
            await self._generate(deltas, parts, settings.deltas - half)
        if ending == "failed":
            response.output = []
            self._finish("failed", error=_SERVER_ERROR)
            self._emit_response("response.failed")
            return
        if ending == "error":
            self._emit("error", error=_ERROR_EVENT)
            response.output = []
            self._finish("failed", error=_SERVER_ERROR)
            return
        text = "".join(parts)
        part = OutputText(text=text)
        item.content = [part]
        item.status = "completed" if ending != "incomplete" else "incomplete"
        self._emit(
            "response.output_text.done",
            item_id=item.id,
            output_index=index,
            content_index=0,
            text=text,
            logprobs=[],
        )
        self._emit(
            "response.content_part.done",
            item_id=item.id,
            output_index=index,
            content_index=0,
            part=part,
        )
        self._emit("response.output_item.done", output_index=index, item=item)
        if ending == "incomplete":
            self._finish(
                "incomplete", details=ResponseIncompleteDetails(reason="max_output_tokens")
            )
            self._emit_response("response.incomplete")
        else:
            self._finish("completed")
            self._emit_response("response.completed")

    # -- text ------------------------------------------------------------------------------------

    async def _generate(self, deltas: TextDeltas, parts: list[str], count: int) -> None:
        """``count`` deltas of seeded text; the hot path of a stream.

        Without a delay or keepalives, frames of a whole chunk (``yield_every`` deltas) are
        built in one loop with one hand-over to the readers, as the Assistants text stream does.
        """
        words = self.settings.tokens_per_delta
        chunk = self.settings.yield_every
        batched = not self.pacer.delay and not self.wire.keepalive_every
        log = self.log
        while count > 0:
            first = not parts or parts[-1].endswith("\n")
            fragments = self._text.fragments(min(count, chunk), words, first=first)
            count -= len(fragments)
            self._output_tokens += len(fragments) * words
            if not batched:
                for text in fragments:
                    await self._delta(deltas, parts, text)
                continue
            parts.extend(fragments)
            if log.wanted:
                seq, frame = log.next_seq, deltas.frame
                log.extend([frame(seq + offset, text) for offset, text in enumerate(fragments)])
            else:
                log.skip(len(fragments))
            await self.pacer.after_batch(len(fragments))

    async def _delta(self, deltas: TextDeltas, parts: list[str], text: str) -> None:
        log = self.log
        parts.append(text)
        if log.wanted:
            log.append(deltas.frame(log.next_seq, text))
        else:
            log.skip()
        await self._pace()

    # -- emission and pacing ---------------------------------------------------------------------

    def _emit(self, kind: str, **fields: object) -> None:
        log = self.log
        if log.wanted:
            log.append(self.framer.event(kind, log.next_seq, **fields))
        else:
            log.skip()

    def _emit_response(self, kind: str) -> None:
        self._emit(kind, response=self.response)
        self._ended = kind in _TERMINAL_EVENTS

    def _finish(
        self,
        status: str,
        *,
        error: ResponseError | None = None,
        details: ResponseIncompleteDetails | None = None,
    ) -> None:
        response = self.response
        response.status = status
        response.error = error
        response.incomplete_details = details
        if status == "completed":
            response.completed_at = now()
        prompt = self.plan.input_tokens
        response.usage = ResponseUsage(
            input_tokens=prompt,
            output_tokens=self._output_tokens,
            total_tokens=prompt + self._output_tokens,
        )

    async def _pace(self) -> None:
        """After each delta: a keepalive when due, then the pacer's check point."""
        every = self.wire.keepalive_every
        if every and (self.pacer.deltas + 1) % every == 0:
            self._emit("keepalive")
        await self.pacer.after_delta()
