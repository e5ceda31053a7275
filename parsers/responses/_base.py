"""Base Structs of the Responses stream events: the ``type`` tag and the shared field groups.

Every event is a frozen, keyword-only Struct tagged by its JSON ``type`` (the openai SDK's
discriminator, reference responses-and-chat.md §1.2), so one msgspec Decoder of the union picks
the class while it parses. Every field has a default, ``type`` being the only key required: OSS
servers and proxies omit ``sequence_number`` and others (§5, OmniRoute#14330).
"""

from __future__ import annotations

import msgspec

__all__ = ["ContentEvent", "Event", "ItemEvent"]


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="type"):
    """Base of every typed Responses event. ``sequence_number`` counts from 0 per response."""

    sequence_number: int | None = None

    @property
    def type(self) -> str:
        """The event's JSON ``type``."""
        tag: str = self.__struct_config__.tag  # type: ignore[assignment]
        return tag


class ItemEvent(Event, frozen=True):
    """An event about the output item ``item_id`` at ``output_index`` of ``response.output``."""

    item_id: str = ""
    output_index: int = 0


class ContentEvent(ItemEvent, frozen=True):
    """An event about content part ``content_index`` of a message or reasoning item."""

    content_index: int = 0
