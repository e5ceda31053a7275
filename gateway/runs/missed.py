"""What a recovered run's channels hold and missed: :class:`FinalIds` and :class:`Missed`.

A relay notes (:meth:`FinalIds.note`) every item (message, step) that reached a final event on
its channels. Once a recovered run has settled, its protocol lists what the run holds upstream
and turns every final item not noted yet into the event that would have carried it
(:class:`Missed`; Assistants: ``assistants/missed.py``).
"""

from __future__ import annotations

import msgspec

from gateway.hub import HubEvent
from parsers.signals import ItemFinal

__all__ = ["FinalIds", "Missed"]


class _Id(msgspec.Struct):
    id: str = ""


_id_decoder = msgspec.json.Decoder(_Id)


class FinalIds:
    """Ids of the messages and steps whose final event reached a run's channels."""

    __slots__ = ("messages", "steps")

    def __init__(self) -> None:
        self.messages: set[str] = set()
        self.steps: set[str] = set()

    def note(self, item: ItemFinal) -> None:
        (self.messages if item.kind == "message" else self.steps).add(item.id)

    def note_published(self, event: HubEvent) -> None:
        """Note a message or step that :func:`missed` found and that was then published."""
        name = event.name
        if name.startswith("thread.message."):
            self.messages.add(_id_decoder.decode(event.data).id)
        elif name.startswith("thread.run.step.") and not name.endswith(".in_progress"):
            self.steps.add(_id_decoder.decode(event.data).id)


class Missed(msgspec.Struct, frozen=True, kw_only=True):
    events: list[HubEvent]
    messages: int
    """Messages among ``events``."""
    steps: int
    """Steps among ``events``."""
    complete: bool
    """False when a listing could not be read to its end (the events are what was found)."""
