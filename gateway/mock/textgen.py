"""Seeded filler text for assistant messages: the same seed always yields the same words.

A message is a list of fragments of ``words`` words each; every fragment starts with a space, except
the first of a message, which starts capitalised, so concatenating them reads as one sentence.
"""

from __future__ import annotations

import random

__all__ = ["WORDS", "TextGenerator"]

_TEXT = """the run stream carries every event from the model to the gateway which fans it out to
    many subscribers over server sent events or web sockets while tools answer calls and the
    thread keeps each message in order so a client can resume after a dropped connection without
    losing a single delta of text that the assistant wrote about weather cities numbers plans
    graphs queues budgets limits timers tokens bytes frames batches steps calls outputs results
    quickly slowly safely clearly briefly calmly gently boldly"""
WORDS: tuple[str, ...] = tuple(_TEXT.split())


class TextGenerator:
    """Draws message fragments from :data:`WORDS` with a private ``random.Random``."""

    __slots__ = ("rng",)

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def fragments(self, count: int, words: int, *, first: bool) -> list[str]:
        """``count`` fragments of ``words`` words; ``first`` starts a new sentence.

        Hot path: one ``choices`` call and one join per fragment, in a list comprehension.
        """
        choices = self.rng.choices
        join = " ".join
        out = [" " + join(choices(WORDS, k=words)) for _ in range(count)]
        if first and out:
            head = out[0][1:]
            out[0] = head[:1].upper() + head[1:]
        return out
