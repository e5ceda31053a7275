"""``CreatorHold``: the creator's copy of a tool-chain round, held from its first tool call on.

A chat tool chain is one HTTP stream to its creator, but each round is choice 0 again and numbers
its tool calls from 0 again: the openai SDK's helper, which merges chunks by those indexes, would
fold every round's calls into the final message (``call_Xcall_Y``, arguments ``{..}{..}``). So from
the event where a round turns to tool calls (``StreamSpec.calls_tools``), its events go to the
channels only and are kept here until the chain decides: a follow-up answers the calls (the held
events are dropped), or the chain stops and the calls are the creator's (they are given to it).
Every event the creator gets carries its own position in the stream's channel as its ``id:``.

A turning event that also says something (Ollama and llama.cpp send an assistant's text and a
whole tool call in one delta) is cut in two by the protocol's rules
(``StreamSpec.said_with_calls``, chat's in ``chat_creator.py``; a Responses stream never turns):
what it says goes to the creator at once, its calls are held. Every other event reaches the creator with the channels' bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.hub import HubEvent, Position

from .publisher import Placed
from .spec import StreamSpec

__all__ = ["CreatorHold"]


class CreatorHold:
    """One relay's hold of its creator's copy, by its protocol's rules (``spec``)."""

    __slots__ = ("_held", "_spec")

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self._held: list[Placed] | None = None

    def copy(self, batch: Sequence[HubEvent], first: Position | None) -> list[Placed]:
        """The creator's copy of ``batch``, numbered from ``first`` in the stream's channel; from
        the round's turn to tool calls on, its events are held instead."""
        spec = self._spec
        copy: list[Placed] = []
        for i, event in enumerate(batch):
            at = None if first is None else Position(first.epoch, first.seq + i)
            if self._held is None and spec.calls_tools(event.decoded):
                self._held = []
                said = spec.said_with_calls(event)
                if said is not None:
                    text, event = said
                    copy.append((text, at))
            if self._held is not None:
                self._held.append((event, at))
            else:
                copy.append((event, at))
        return copy

    def release(self, *, answered: bool) -> list[Placed]:
        """End this round: what was held, for the creator if the chain stops here; ``answered``:
        a follow-up answers the calls (nothing is given)."""
        held, self._held = self._held or [], None
        return [] if answered else held
