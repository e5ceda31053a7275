"""``ChannelPublisher``: where one protocol stream's events go, numbered once by the hub.

Each batch is published in one call to the stream's own channel (once its id is known) and the
channels the creating request named up front (its conversation, its ``Runcast-Channel``); the
hub numbers it per channel. Unless it is for subscribers only, it is then pushed to the creator's
:class:`~gateway.runs.feed.CreatorFeed` with ``id: <seq in the stream's channel>``, so a creator
cut off can resume from ``GET /streams/<kind>/<id>?since=<id>``; a creator's copy that differs
from the batch (a tool chain's, ``creator_hold.py``) gives each of its events the seq of the
event it stands for. The push never blocks. Frames that came without an ``event:`` line go to the
creator without one too: the openai SDK reads an unnamed frame as a chunk or a Responses event,
but wraps a named one it does not know.

When runcast continues a stream with tool outputs (``toolchain.py``), the follow-up's events go
on in the first stream's channel (``own``, which numbers the creator's ids) and also in the
follow-up's own channel (``current``), closed when that stream ends.

Fencing (Redis mode): once the relay holds its stream's lease, every publish carries it
(``fence``); a publish refused because another node owns the stream now calls ``on_fenced`` and
stops this publisher: nothing more goes to the channels or the creator, and it closes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.hub import Broker, Fence, HubEvent, Position, StaleFence
from parsers.sse import encode_sse

from ..feed import CreatorFeed

__all__ = ["ChannelPublisher", "CreatorCopy", "Placed"]

_UNNAMED = "message"
"""The SSE event type of a frame without an ``event:`` line (WHATWG HTML §9.2.6)."""

Placed = tuple[HubEvent, Position | None]
"""An event for the creator and the position it stands for in ``own`` (its ``id:``)."""

CreatorCopy = Callable[[Sequence[HubEvent], Position | None], Iterable[Placed]]
"""What the creator gets of a batch numbered from a position in ``own``, in its place."""


class ChannelPublisher:
    """Publishes one stream's events to the hub and its creator's feed."""

    __slots__ = (
        "_broker",
        "_feed",
        "_others",
        "current",
        "fence",
        "last",
        "on_fenced",
        "own",
        "stopped",
    )

    def __init__(self, broker: Broker, feed: CreatorFeed | None, others: Sequence[str]) -> None:
        self._broker = broker
        self._feed = feed
        self._others = list(others)
        self.own: str | None = None
        """The stream's own channel, once its id is known (the first stream's, in a chain)."""
        self.current: str | None = None
        """A follow-up stream's own channel, while it is relayed."""
        self.last: Position | None = None
        """The position of the last event published to ``own``."""
        self.fence: Fence | None = None
        self.on_fenced: Callable[[], None] | None = None
        self.stopped = False
        """A fenced publish was refused: this publisher writes nothing more."""

    @property
    def others(self) -> list[str]:
        """The channels named up front (a conversation's, a named one)."""
        return list(self._others)

    @property
    def channels(self) -> list[str]:
        return [c for c in (self.own, self.current) if c is not None] + self._others

    async def emit_batch(
        self,
        events: Sequence[HubEvent],
        *,
        to_creator: bool = True,
        creator_copy: CreatorCopy | None = None,
    ) -> None:
        """Publish ``events`` to the channels; the creator's copy (``events``, or what
        ``creator_copy`` makes of them) is pushed as soon as the broker has numbered them,
        before this node's subscribers get them."""
        if self.stopped:
            return
        own = self.own
        pushed = False

        def numbered(firsts: Mapping[str, Position]) -> None:
            nonlocal pushed
            first = None if own is None else firsts.get(own)
            if first is not None:
                self.last = Position(first.epoch, first.seq + len(events) - 1)
            if to_creator:
                pushed = True
                self._copy(events, first, creator_copy)

        channels = self.channels
        if channels and events:
            try:
                await self._broker.publish(channels, events, fence=self.fence, first=numbered)
            except StaleFence:
                self.stopped = True
                if self.on_fenced is not None:
                    self.on_fenced()
                return
        if to_creator and not pushed:
            self._copy(events, None, creator_copy)

    def to_creator(self, events: Sequence[HubEvent]) -> None:
        """Give the creator events the channels do not get in this form; they carry the id of
        the last event published to ``own``."""
        self._push(events, self.last, step=0)

    def placed_to_creator(self, placed: Iterable[Placed]) -> None:
        """Give the creator events, each with the id of the position it stands for."""
        for event, at in placed:
            self._push((event,), at)

    def _copy(
        self, events: Sequence[HubEvent], first: Position | None, copy: CreatorCopy | None
    ) -> None:
        if copy is None:
            self._push(events, first)
        else:
            self.placed_to_creator(copy(events, first))

    def _push(self, events: Sequence[HubEvent], first: Position | None, *, step: int = 1) -> None:
        feed = self._feed
        if feed is None or not feed.accepting:
            return
        for i, event in enumerate(events):
            event_id = None if first is None else str(Position(first.epoch, first.seq + i * step))
            name = None if event.name == _UNNAMED else event.name
            feed.push(encode_sse(event.data, event=name, id=event_id), event_id=event_id)

    def end_creator(self) -> None:
        if self._feed is not None:
            self._feed.finish()

    def stop_creator(self) -> None:
        if self._feed is not None:
            self._feed.stop()

    async def close_own(self) -> None:
        await self.close_current()
        if self.own is not None and not self.stopped:
            await self._broker.close_channel(self.own)

    async def close_current(self) -> None:
        """A follow-up stream is over: its own channel closes."""
        current, self.current = self.current, None
        if current is not None and not self.stopped:
            await self._broker.close_channel(current)
