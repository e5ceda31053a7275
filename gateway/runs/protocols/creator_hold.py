"""``CreatorHold``: the creator's copy of a tool-chain round, held from its first tool call on.

A chat tool chain is one HTTP stream to its creator, but each round is choice 0 again and numbers
its tool calls from 0 again: the openai SDK's helper, which merges chunks by those indexes, would
fold every round's calls into the final message (``call_Xcall_Y``, arguments ``{..}{..}``). So from
the event where a round turns to tool calls (``StreamSpec.calls_tools``), its events go to the
channels only and are kept here until the chain decides: a follow-up answers the calls (the held
events are dropped), or the chain stops and the calls are the creator's (they are given to it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.hub import HubEvent

__all__ = ["CreatorHold"]


class CreatorHold:
    """One relay's hold of its creator's copy (``turns``: the spec's ``calls_tools``)."""

    __slots__ = ("_held", "_turns")

    def __init__(self, turns: Callable[[object], bool]) -> None:
        self._turns = turns
        self._held: list[HubEvent] | None = None

    def split(self, batch: Sequence[HubEvent]) -> tuple[Sequence[HubEvent], Sequence[HubEvent]]:
        """``batch`` as (events for the channels and the creator, events for the channels only,
        now held)."""
        held = self._held
        if held is None:
            turn = next((i for i, event in enumerate(batch) if self._turns(event.decoded)), None)
            if turn is None:
                return batch, ()
            held = self._held = []
            batch, rest = batch[:turn], batch[turn:]
        else:
            batch, rest = (), batch
        held.extend(rest)
        return batch, rest

    def release(self) -> list[HubEvent]:
        """End the hold of this round: what was held (for the creator, if the chain stops)."""
        held, self._held = self._held, None
        return held or []
