"""The text of one assistant message, streamed as ``thread.message.delta`` frames (spec §4.4).

This is the simulator's hot path: nearly every event of a long run is a text delta. Fragments are
generated in chunks, each frame is ``prefix + json_string(fragment) + suffix`` appended to the
emitter's buffer, and the buffer is flushed only when a batch is full (or after each delta when a
``delay_ms`` paces the stream). Without a listener, only the text is kept, and the loop yields to
the event loop once per chunk so other runs keep moving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.mock.emitter import Emitter
from gateway.mock.frames import MessageDeltaTemplate, json_string
from gateway.mock.textgen import TextGenerator

__all__ = ["TextStream"]


class TextStream:
    """Streams and records the text of message ``message_id``.

    ``check`` is called at every flush and pause; it raises to stop the stream (a cancel).
    Fragments are appended to ``parts``, owned by the caller, and generated ``chunk`` at a time.
    """

    __slots__ = ("_check", "_chunk", "_delay", "_emitter", "_template", "_text", "_words", "parts")

    def __init__(
        self,
        *,
        emitter: Emitter,
        text: TextGenerator,
        message_id: str,
        words: int,
        delay: float,
        check: Callable[[], None],
        parts: list[str],
        chunk: int,
    ) -> None:
        self._emitter = emitter
        self._text = text
        self._template = MessageDeltaTemplate(message_id)
        self._words = words
        self._delay = delay
        self._check = check
        self.parts = parts
        self._chunk = chunk

    @property
    def value(self) -> str:
        return "".join(self.parts)

    async def quote(self, text: str) -> None:
        """One delta carrying ``text`` verbatim."""
        self._fragment(text)
        await self._emitter.pace(self._delay)
        self._check()

    async def generate(self, count: int) -> None:
        """``count`` deltas of seeded filler text."""
        em, parts, template = self._emitter, self.parts, self._template
        prefix, suffix, batch = template.prefix, template.suffix, em.batch_bytes
        buf, append, enc = em.buf, parts.append, json_string
        while count > 0:
            first = not parts or parts[-1].endswith("\n")
            chunk = self._text.fragments(min(count, self._chunk), self._words, first=first)
            count -= len(chunk)
            if not parts:
                self._fragment(chunk.pop(0))
            if self._delay:
                for text in chunk:
                    await self.quote(text)
                continue
            for text in chunk:
                append(text)
                if em.sink is not None:
                    buf += prefix
                    buf += enc(text)
                    buf += suffix
                    if len(buf) >= batch:
                        await em.flush()
                        self._check()
            if em.sink is None:
                await asyncio.sleep(0)
            self._check()

    def _fragment(self, text: str) -> None:
        first = not self.parts
        self.parts.append(text)
        if self._emitter.active:
            template = self._template
            suffix = template.first_suffix if first else template.suffix
            self._emitter.raw(template.prefix + json_string(text) + suffix)
