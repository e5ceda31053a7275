"""RunPublisher: where a run's events go, numbered once by the hub.

Each event is published in one call to ``run:{run_id}`` and ``thread:{thread_id}`` (those known so
far); the hub numbers it per channel and says which run seq it gave the batch. Unless it is for
subscribers only, it is then pushed to the creator's :class:`~gateway.runs.feed.CreatorFeed`
framed with ``id: <run epoch>-<run seq>``, so the creator can resume on the run channel from any
event it saw.
The seqs are the ones ``publish`` returned, never the channel's latest (tool events and a client's
own submission publish to the same run channel). The push never blocks (the feed is bounded and
cuts a slow creator off instead).

Fencing: once the relay holds its run's lease, every publish carries it (``fence``); a publish the
broker refuses because another node owns the run now (:class:`~gateway.hub.StaleFence`) calls
``on_fenced`` and stops this publisher: nothing more goes to the channels or the creator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gateway.hub import Broker, Fence, HubEvent, Position, StaleFence
from parsers.sse import encode_sse

from .channels import run_channel, thread_channel
from .feed import CreatorFeed

__all__ = ["RunPublisher"]


class RunPublisher:
    """Publishes one run's events to the hub and its creator's feed."""

    __slots__ = (
        "_broker",
        "_feed",
        "_run_epoch",
        "_run_seq",
        "fence",
        "on_fenced",
        "run_id",
        "stopped",
        "thread_id",
    )

    def __init__(
        self,
        broker: Broker,
        feed: CreatorFeed | None,
        *,
        run_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        self._broker = broker
        self._feed = feed
        self._run_seq: int | None = None
        self._run_epoch = ""
        self.run_id = run_id
        self.thread_id = thread_id
        self.fence: Fence | None = None
        self.on_fenced: Callable[[], None] | None = None
        self.stopped = False
        """A fenced publish was refused: this publisher writes nothing more."""

    def run_seq(self) -> int | None:
        """The run seq of the last event published here (None before any reached the run)."""
        return self._run_seq

    async def emit(self, event: HubEvent, *, to_creator: bool = True) -> int | None:
        """Publish one event; its run seq (None before the run id is known)."""
        return await self.emit_batch([event], to_creator=to_creator)

    async def emit_batch(
        self, events: Sequence[HubEvent], *, to_creator: bool = True
    ) -> int | None:
        """Publish ``events`` in one batch; the run seq of the first (None: no run id yet).

        The creator's copy is pushed as soon as the broker has numbered the batch, before the
        broker writes it to this node's subscribers (``Broker.publish``'s ``first``)."""
        if self.stopped:
            return None
        run = None if self.run_id is None else run_channel(self.run_id)
        first: int | None = None
        pushed = False

        def numbered(positions: Mapping[str, Position]) -> None:
            nonlocal first, pushed
            position = None if run is None else positions.get(run)
            if position is not None:
                first = position.seq
                self._run_epoch = position.epoch
                self._run_seq = first + len(events) - 1
            if to_creator:
                pushed = True
                self._push(events, first)

        try:
            if run is not None:
                channels = [run]
                if self.thread_id is not None:
                    channels.append(thread_channel(self.thread_id))
                await self._broker.publish(channels, events, fence=self.fence, first=numbered)
            elif self.thread_id is not None:
                await self._broker.publish([thread_channel(self.thread_id)], events, first=numbered)
        except StaleFence:
            self.stopped = True
            if self.on_fenced is not None:
                self.on_fenced()
            return None
        if to_creator and not pushed:
            self._push(events, first)  # no channel yet, or a broker that did not call back
        return first

    def _push(self, events: Sequence[HubEvent], first: int | None) -> None:
        feed = self._feed
        if feed is not None and feed.accepting:
            for i, event in enumerate(events):
                event_id = None if first is None else self._event_id(first + i)
                feed.push(encode_sse(event.data, event=event.name, id=event_id), event_id=event_id)

    def to_creator(self, event: HubEvent, seq: int | None) -> None:
        """Give the creator an event published earlier (for subscribers only, until now)."""
        if self._feed is not None:
            event_id = None if seq is None else self._event_id(seq)
            self._feed.push(encode_sse(event.data, event=event.name, id=event_id))

    def _event_id(self, seq: int) -> str:
        return str(Position(self._run_epoch, seq))

    def end_creator(self) -> None:
        """The creator's response ends after what it has been given so far."""
        if self._feed is not None:
            self._feed.finish()

    def stop_creator(self) -> None:
        """The gateway stops before the run's end: the creator's response says so and ends."""
        if self._feed is not None:
            self._feed.stop()

    async def close_run(self) -> None:
        if self.run_id is not None and not self.stopped:
            await self._broker.close_channel(run_channel(self.run_id))
