"""``CreatorHold``: the creator's copy of a tool-chain round, held from its first tool call on.

A chat tool chain is one HTTP stream to its creator, but each round is choice 0 again and numbers
its tool calls from 0 again: the openai SDK's helper, which merges chunks by those indexes, would
fold every round's calls into the final message (``call_Xcall_Y``, arguments ``{..}{..}``). So from
the event where a round turns to tool calls (``StreamSpec.calls_tools``), its events go to the
channels only and are kept here until the chain decides: a follow-up answers the calls (the held
events are dropped), or the chain stops and the calls are the creator's (they are given to it).
Every event the creator gets carries its own position in the stream's channel as its ``id:``.

The creator's copy differs from the channels' in two ways, by the protocol's rules (``StreamSpec``;
chat's are ``chat_creator.py``, a Responses stream never turns and its usage stays as sent: its
creator gets every response of the chain, each with its own):

- A turning event that also says something (Ollama and llama.cpp send an assistant's text and a
  whole tool call in one delta) is cut in two (``said_with_calls``): what it says goes to the
  creator at once, its calls are held.
- The creator gets the role once, with the first event it is given that names one (``names``):
  rounds after an answered one reach it as their continuation (``continued``: chat's deltas lose
  the ``role`` each round names again, which the SDK would join to the first's) only once it
  has it. OpenAI and the simulator name the role in the delta of a round's first call, which is
  held and dropped when the round is answered: the next round's role is then the creator's.
- The upstream bills every round, but the creator sees one completion: once a round is answered,
  each later event that carries ``usage`` reaches the creator with the answered rounds' usage
  (each round's last) added to it, field by field (``prompt_tokens_details`` ... included), so the
  SDK's final ``usage`` is the whole chain's.

Every other event reaches the creator with the channels' bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.hub import HubEvent, Position

from .publisher import Placed
from .spec import StreamSpec

__all__ = ["CreatorHold"]


class CreatorHold:
    """One relay's hold of its creator's copy, by its protocol's rules (``spec``)."""

    __slots__ = ("_answered", "_continued", "_held", "_named", "_spec", "_usage")

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self._held: list[Placed] | None = None
        self._usage: dict[str, Any] | None = None
        """The last ``usage`` of this round."""
        self._answered: dict[str, Any] | None = None
        """The usage of the rounds answered so far, summed."""
        self._continued = False
        """A round was answered: this one continues it for the creator."""
        self._named = False
        """The creator has been given the role."""

    def copy(self, batch: Sequence[HubEvent], first: Position | None) -> list[Placed]:
        """The creator's copy of ``batch``, numbered from ``first`` in the stream's channel; from
        the round's turn to tool calls on, its events are held instead."""
        spec = self._spec
        copy: list[Placed] = []
        for i, event in enumerate(batch):
            at = None if first is None else Position(first.epoch, first.seq + i)
            usage = spec.usage(event)
            if usage is not None:
                self._usage = usage
            if self._held is None and spec.calls_tools(event.decoded):
                self._held = []
                said = spec.said_with_calls(event)
                if said is not None:
                    # No id of its own: the event at ``at`` is whole only with its held calls.
                    text, event = said
                    copy.append((self._own(text), None))
            if self._held is not None:
                self._held.append((event, at))
            else:
                copy.append((self._billed(self._own(event), usage), at))
        return copy

    def release(self, *, answered: bool) -> list[Placed]:
        """End this round: what was held, for the creator if the chain stops here; ``answered``:
        a follow-up answers the calls (nothing is given) and the round's usage is carried on."""
        held, self._held = self._held or [], None
        usage, self._usage = self._usage, None
        if answered:
            self._continued = True
            if usage is not None:
                self._answered = usage if self._answered is None else _sum(self._answered, usage)
            return []
        return [(self._billed(self._own(event), self._spec.usage(event)), at) for event, at in held]

    def _own(self, event: HubEvent) -> HubEvent:
        """``event`` as the creator gets it (called once per event given, in order)."""
        if not self._named:
            self._named = self._spec.names(event)
            return event
        return self._spec.continued(event) if self._continued else event

    def _billed(self, event: HubEvent, usage: dict[str, Any] | None) -> HubEvent:
        """``event`` with the answered rounds' usage added to its own ``usage``, if any."""
        if usage is None or self._answered is None:
            return event
        return self._spec.with_usage(event, _sum(self._answered, usage))


def _sum(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two ``usage`` objects added field by field (nested objects too); ``b``'s other fields."""
    summed = dict(b)
    for key, value in a.items():
        other = summed.get(key)
        if _count(value) and _count(other):
            summed[key] = other + value
        elif isinstance(value, dict) and isinstance(other, dict):
            summed[key] = _sum(value, other)
        elif other is None:
            summed[key] = value
    return summed


def _count(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
