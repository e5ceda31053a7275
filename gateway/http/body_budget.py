"""``BodyBudget``: the bytes of request bodies runcast holds at once, against
``--body-buffer-bytes`` (``gateway.http.bodies`` takes and gives them back)."""

from __future__ import annotations

__all__ = ["BodyBudget"]


class BodyBudget:
    """The bytes of request bodies held at once, against ``--body-buffer-bytes``."""

    __slots__ = ("capacity", "held")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.capacity:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size
