"""What a publishing node holds while Redis is unreachable: a bounded tail per channel.

When an append fails because Redis cannot be reached, the publishing node numbers the batch
itself (its local channel's next seq: the node that owns a run holds its channels' tails, so it
numbers them as Redis would have), delivers it to its own subscribers at once and keeps it here
until a background task re-appends it, in order, at those seqs (``wire.APPEND`` skips a batch whose
first attempt landed; a log that moved on meanwhile numbers it after what it holds instead). A
channel's close is held the same way, after its last batch.

Bound (:class:`TailLimits`): events and bytes per channel, and bytes over every channel. A batch
that does not fit waits (the publish does not return) until the tail has room: the relay stops
reading its upstream, whose own buffers hold what follows, so nothing accepted is ever dropped and
this node's memory stays bounded. Dropping the oldest instead would leave a hole in the log that
every other node could only answer with ``runcast.history_lost``, and the owner's subscribers already
have what the tail holds. A batch larger than the bound is admitted into an empty tail (it must be
able to pass at all).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Sequence

import msgspec

from gateway.errors import ConfigError
from gateway.hub.broker import Fence, HubEvent

__all__ = ["Held", "TailLimits", "Tails"]


class TailLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much a node holds back for re-append while Redis is unreachable."""

    max_events: int = 10_000
    """Events held per channel: a long answer is a few thousand deltas, so one run rides out an
    outage of its whole length; at 50 events/s that is over three minutes."""
    max_bytes: int = 4 * 1024 * 1024
    """Bytes of event data held per channel (twice ``HubSettings.max_history_bytes``)."""
    max_total_bytes: int = 64 * 1024 * 1024
    """Bytes held over every channel of the node (a quarter of the default memory budget)."""

    def __post_init__(self) -> None:
        for name in ("max_events", "max_bytes", "max_total_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"broker_tail {name} must be >= 0, got {getattr(self, name)!r}")


class Held:
    """One batch (or, ``events`` empty, a close) held for ``channel``, numbered from ``first`` in
    ``epoch``; ``token`` tells a retry of it from anyone else's events; ``fence``, the publisher's
    lease, refuses it if another node took the run over meanwhile."""

    __slots__ = ("channel", "epoch", "events", "fence", "first", "nbytes", "token")

    def __init__(
        self,
        channel: str,
        epoch: str,
        first: int,
        events: Sequence[HubEvent],
        token: str,
        fence: Fence | None = None,
    ) -> None:
        self.channel = channel
        self.epoch = epoch
        self.first = first
        self.events = events
        self.token = token
        self.fence = fence
        self.nbytes = sum(len(e.data) for e in events)

    @property
    def is_close(self) -> bool:
        return not self.events


class _Tail:
    __slots__ = ("events", "items", "nbytes")

    def __init__(self) -> None:
        self.items: deque[Held] = deque()
        self.events = 0
        self.nbytes = 0


class Tails:
    """Every channel's tail, in publish order per channel, with the bounds of :class:`TailLimits`.

    ``work`` is set while something is held (the re-append task waits on it); every removal wakes
    the publishes waiting for room.
    """

    def __init__(self, limits: TailLimits | None = None) -> None:
        self.limits = limits or TailLimits()
        self._tails: dict[str, _Tail] = {}
        self.events = 0
        """Events held over every channel."""
        self.nbytes = 0
        """Bytes of event data held over every channel."""
        self.work = asyncio.Event()
        self._changed = asyncio.Event()
        self.waits = 0
        """Publishes that had to wait for room (the bound was reached)."""

    def __len__(self) -> int:
        return len(self._tails)

    def holds(self, channel: str) -> bool:
        return channel in self._tails

    def room(self, channels: Sequence[str], events: int, nbytes: int) -> bool:
        """Whether a batch of ``events`` / ``nbytes`` fits every one of ``channels``."""
        limits = self.limits
        if self.nbytes and self.nbytes + nbytes > limits.max_total_bytes:
            return False
        for name in channels:
            tail = self._tails.get(name)
            if tail is None:
                continue
            if tail.events + events > limits.max_events or tail.nbytes + nbytes > limits.max_bytes:
                return False
        return True

    def add(self, held: Held) -> None:
        tail = self._tails.get(held.channel)
        if tail is None:
            tail = self._tails[held.channel] = _Tail()
        tail.items.append(held)
        tail.events += len(held.events)
        tail.nbytes += held.nbytes
        self.events += len(held.events)
        self.nbytes += held.nbytes
        self.work.set()

    def heads(self, limit: int) -> list[Held]:
        """Up to ``limit`` held batches to re-append next, each channel's in order (channels
        taken round by round, so one long tail does not starve the others)."""
        out: list[Held] = []
        iters: list[Iterator[Held]] = [iter(t.items) for t in self._tails.values()]
        while iters and len(out) < limit:
            still: list[Iterator[Held]] = []
            for it in iters:
                held = next(it, None)
                if held is not None:
                    out.append(held)
                    still.append(it)
                    if len(out) == limit:
                        break
            iters = still
        return out

    def last_fence(self, channel: str) -> Fence | None:
        """The fence of the last batch held for ``channel``, which its held close carries."""
        tail = self._tails.get(channel)
        return tail.items[-1].fence if tail is not None else None

    def done(self, held: Held) -> None:
        """``held`` is in the log now (it must be its channel's oldest)."""
        tail = self._tails[held.channel]
        assert tail.items[0] is held
        tail.items.popleft()
        tail.events -= len(held.events)
        tail.nbytes -= held.nbytes
        self.events -= len(held.events)
        self.nbytes -= held.nbytes
        if not tail.items:
            del self._tails[held.channel]
            if not self._tails:
                self.work.clear()
        self.wake()

    def wake(self) -> None:
        """Wake the publishes waiting for room (something was removed, or the broker closes)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self) -> None:
        """Wait until something is removed (or :meth:`wake`)."""
        self.waits += 1
        await self._changed.wait()

    def clear(self) -> int:
        """Forget everything held (the broker closes); the number of events forgotten."""
        lost = self.events
        self._tails.clear()
        self.events = self.nbytes = 0
        self.work.clear()
        self.wake()
        return lost
