"""HubCounters: the totals every channel of one broker adds to, read by its limits (subscribers,
pending channels per client), its memory budget (``retained_bytes``) and ``statistics()``.

One object per broker, passed to each of its channels: a channel counts what it does once per
batch, never per subscriber, and nothing here is read on the fan-out path.
"""

from __future__ import annotations

__all__ = ["HubCounters"]


class HubCounters:
    """Totals shared by all channels of one broker (limits and broker statistics)."""

    __slots__ = (
        "bytes_published",
        "channels_dropped",
        "delivered",
        "disconnected",
        "ends",
        "events_published",
        "history_misses",
        "lagged",
        "pending_by_owner",
        "pending_channels",
        "resumes",
        "retained_bytes",
        "subscribers",
    )

    def __init__(self) -> None:
        self.subscribers = 0
        self.pending_channels = 0
        self.pending_by_owner: dict[str, int] = {}
        """Pending channels per creating client; owners holding none are absent."""
        self.events_published = 0
        self.bytes_published = 0
        self.lagged = 0
        self.disconnected = 0
        self.channels_dropped = 0
        self.retained_bytes = 0
        """What every channel retains: history, reducer estimate, cached snapshot (budget.py)."""
        self.delivered: dict[str, int] = {}
        """Events written to subscribers by frame format, counted once per batch and format."""
        self.ends: dict[str, int] = {}
        """Subscriptions ended, by reason."""
        self.resumes = 0
        self.history_misses = 0

    def add_pending(self, owner: str | None) -> None:
        self.pending_channels += 1
        if owner is not None:
            self.pending_by_owner[owner] = self.pending_by_owner.get(owner, 0) + 1

    def release_pending(self, owner: str | None) -> None:
        self.pending_channels -= 1
        if owner is not None:
            left = self.pending_by_owner.pop(owner) - 1
            if left:
                self.pending_by_owner[owner] = left
