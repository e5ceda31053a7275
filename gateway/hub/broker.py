"""The hub's contract: the :class:`Broker` interface and the values that cross it.

A broker maps channel names (``run:{run_id}``, ``thread:{thread_id}``) to ordered event logs. Each
channel numbers its events 1, 2, 3... (``seq``), keeps a bounded history for resume, optionally
folds every event into a :class:`Reducer` for snapshots, and writes each published batch to its
subscribers' :class:`Sink` objects. Event data are opaque bytes (JSON from upstream, or the literal
``[DONE]``); the hub never parses them.

Memory mode (``gateway.hub.memory.MemoryBroker``) is the embedded default. A multi-node broker
(Redis) implements the same :class:`Broker` protocol; nothing outside ``gateway/hub`` may depend on
anything but this module and ``gateway.hub.transports``.

Positions. Every event has a :class:`Position` ``(epoch, seq)``. The epoch names one life of a
channel's log: it is chosen when the log starts (memory mode: when the broker creates the channel;
a multi-node broker: when its store first sees the channel, so a store that lost its data picks a
new one). Seqs restart at 1 in a new epoch, so a resume position only ever matches an event of its
own epoch; anything else (another epoch, or a bare number) is treated as not in history. On the
wire a position is ``<epoch>-<seq>`` (SSE ``id:``, ``Last-Event-ID``, ``?since=``); payloads carry
it as ``"epoch"`` and ``"seq"``. ``since=0`` (any epoch, or none) means "from the start".

Notices the hub itself emits on a subscription (never stored in history, never numbered):

``runcast.history_lost``  ``{"since": s, "epoch": e, "first_seq": f, "last_seq": l}``: the resume
                          position ``s`` (as given) is not in history (another epoch, evicted, or
                          beyond the channel's end). ``first_seq`` is the oldest seq still held in
                          epoch ``e`` (``last_seq + 1`` when none is). What follows is the snapshot
                          when the channel has a reducer, else every event held.
``runcast.snapshot``      ``{"epoch": e, "seq": n, "snapshot": {...}}``; carries ``id: e-n`` on
                          SSE, so a browser's ``Last-Event-ID`` resumes after it. Live events
                          follow from ``n + 1``.
``runcast.lagged``        ``{"error": {...}, "epoch": e, "seq": n}``: the subscriber's output buffer
                          overflowed; ``n`` is the last seq written to it. The stream ends next;
                          resume with ``since=e-n``. The creator's response ends with the same
                          shape (``error`` makes the openai SDK raise).
``runcast.degraded``      ``{"reason": r, "since": t}``: this node lost its connection to the
                          cluster's broker at Unix time ``t`` (``reason``: ``redis_unreachable``).
                          The stream goes on: on the node publishing the channel, live as
                          before; elsewhere, what was published meanwhile follows in order once
                          the connection is back. Sent once per outage to every subscriber (and
                          to one attaching during it).
``runcast.restored``      ``{"since": t}``: the outage that began at ``t`` is over.
``runcast.shutdown``      ``{"epoch": e, "seq": n, "retry_ms": r}``: the broker is closing (the
                          gateway stops); on SSE with ``retry: r`` so an ``EventSource`` waits that
                          long before it reconnects (to another node). The stream ends next
                          (WebSocket: 1012).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from gateway.errors import ConfigError

__all__ = [
    "DEGRADED_EVENT",
    "HISTORY_LOST_EVENT",
    "LAGGED_EVENT",
    "RESTORED_EVENT",
    "SHUTDOWN_EVENT",
    "SHUTDOWN_RETRY_MS",
    "SNAPSHOT_EVENT",
    "START",
    "Broker",
    "BrokerStatistics",
    "ChannelStatistics",
    "EndReason",
    "Fence",
    "FrameFormat",
    "HubEvent",
    "HubSettings",
    "Numbered",
    "Position",
    "Reducer",
    "ReducerFactory",
    "Sink",
    "SizedReducer",
    "Snapshot",
    "StaleFence",
    "Subscription",
    "lagged_payload",
]

DEGRADED_EVENT = "runcast.degraded"
RESTORED_EVENT = "runcast.restored"
HISTORY_LOST_EVENT = "runcast.history_lost"
SNAPSHOT_EVENT = "runcast.snapshot"
LAGGED_EVENT = "runcast.lagged"
SHUTDOWN_EVENT = "runcast.shutdown"
SHUTDOWN_RETRY_MS = 5000
"""The reconnection delay ``runcast.shutdown`` asks of an ``EventSource``: long enough for a load
balancer to have taken the stopping node out, short enough that a chat UI barely notices."""

EndReason = Literal["ended", "lagged", "disconnected", "detached", "shutdown"]
"""Why a subscription stopped.

``ended``: the channel was closed (the run finished) and everything was written. ``lagged``: the
output buffer overflowed. ``disconnected``: the peer went away. ``detached``: the subscriber side
called :meth:`Subscription.close`. ``shutdown``: the broker was closed.
"""


_POSITION = re.compile(r"(?:([0-9A-Za-z_.]{1,64})-)?([0-9]{1,18})")


class Position(msgspec.Struct, frozen=True, gc=False):
    """Where an event sits: its channel log's ``epoch`` and its ``seq`` there.

    ``str()`` gives the wire form ``<epoch>-<seq>`` (a bare ``<seq>`` when the epoch is empty, as
    for a number from an older client, which matches no event past the start).
    """

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}" if self.epoch else str(self.seq)

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read ``<epoch>-<seq>`` or a bare ``<seq>``; ValueError for anything else."""
        match = _POSITION.fullmatch(text)
        if match is None:
            raise ValueError(f"invalid position: {text[:40]!r}")
        return cls(match.group(1) or "", int(match.group(2)))

    def matches(self, epoch: str) -> bool:
        """Whether seqs of ``epoch`` continue from here (always at the start, ``seq == 0``)."""
        return self.seq == 0 or self.epoch == epoch


START = Position("", 0)
"""Resume from the very start of whatever epoch the channel is in."""


def lagged_payload(epoch: str, seq: int, where: str) -> bytes:
    """The one ``runcast.lagged`` payload, from the hub and the creator's response alike."""
    return msgspec.json.encode(
        {
            "error": {
                "message": f"runcast: this stream fell behind its channel; resume with {where}",
                "type": "runcast_lagged",
                "param": None,
                "code": "lagged",
            },
            "epoch": epoch,
            "seq": seq,
        }
    )


class HubEvent(msgspec.Struct, frozen=True, gc=False):
    """One event: its SSE event name and its data bytes, passed through unchanged.

    ``name`` must not contain CR or LF (it becomes an SSE ``event:`` line). ``decoded`` is an
    optional in-process parsed form of ``data`` that the publisher already holds; a reducer may
    use it instead of parsing ``data`` again. The hub never reads it, and a broker that crosses
    process boundaries drops it (reducers must work from ``data`` alone).
    """

    name: str
    data: bytes
    decoded: object = None


class Fence(msgspec.Struct, frozen=True, gc=False):
    """A publisher's lease: the key holding the run's current lease and the token it holds."""

    key: str
    token: int


class StaleFence(RuntimeError):
    """A fenced publish was refused: the run's lease went to a newer holder."""


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """A channel's reduced state and the position it reflects (``data`` is JSON, ``b"null"`` if
    none)."""

    seq: int
    data: bytes
    epoch: str = ""

    def to_json(self) -> bytes:
        """``{"epoch": e, "seq": n, "snapshot": ...}``: the body of the snapshot endpoint and
        event."""
        return b'{"epoch":"%s","seq":%d,"snapshot":%s}' % (self.epoch.encode(), self.seq, self.data)


class FrameFormat(enum.Enum):
    """The wire form a sink takes; the hub encodes each batch once per format in use."""

    SSE = "sse"
    """SSE frames, body delimited by connection close (HTTP/1.0)."""
    SSE_CHUNKED = "sse-chunked"
    """SSE frames wrapped in HTTP/1.1 chunked transfer-coding, one chunk per batch."""
    WEBSOCKET = "websocket"
    """Complete unmasked server-to-client WebSocket text frames, one per event."""


class HubSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits and timings of a broker. Defaults suit one gateway process serving a few thousand runs.

    Sizes are bytes, times seconds.
    """

    max_history_events: int = 10_000
    """Events kept per channel for resume. A long streamed answer is a few thousand deltas."""
    max_history_bytes: int = 2 * 1024 * 1024
    """Bytes of event data kept per channel (the older half of a huge run is served by snapshot)."""
    retention: float = 300.0
    """How long an ended channel's history stays available for late resumes."""
    idle_ttl: float = 900.0
    """An open channel with no subscriber and no event for this long is dropped (thread channels,
    and run channels whose publisher vanished)."""
    max_subscribers_per_channel: int = 10_000
    max_subscribers: int = 50_000
    max_pending_channels: int = 10_000
    """Channels created by subscribers before any event (a thread's next run); bounds what clients
    can make the hub allocate. Channels created by publishing are not counted."""
    max_pending_channels_per_client: int = 256
    """Pending channels one client (the ``owner`` given to :meth:`Broker.subscribe`: the gateway
    passes the caller's address) may have created and still count, so that one address cannot
    take all of ``max_pending_channels``. A channel counts against its creator until its first
    event or until it is forgotten (``pending_grace``), whoever else subscribed to it since."""
    pending_grace: float = 10.0
    """A pending channel left without subscribers is forgotten after this long (or ``idle_ttl``
    if shorter). It never held an event, so nothing is lost, and it stops counting against the
    limits above; a subscriber coming back later simply creates it again."""
    subscriber_buffer_bytes: int = 1024 * 1024
    """Bytes a subscriber may have waiting in its socket's write buffer before it is cut off with
    ``runcast.lagged``. A replay may exceed it once (it is written to an empty buffer)."""
    heartbeat_interval: float = 15.0
    """SSE comment / WebSocket ping period; below common proxy idle timeouts (30-60 s). 0 disables."""
    coalesce_ms: float = 0.0
    """Events published within this many milliseconds of the first one held go out together: one write per
    subscriber instead of one per publish, for up to this much added latency (``channel.py``).
    0 (the default) writes every publish at once: the relay already publishes what one upstream
    read brought as one batch, and windows of 2 and 5 ms raised neither deliveries/s nor p99 in
    ``bench/serve_bench.py`` (N = 1,000 SSE, paced and burst, on a loaded shared host)."""
    sweep_interval: float = 1.0
    """How often dead connections are collected and expired channels dropped."""
    close_timeout: float = 5.0
    """How long a finishing subscriber may take to drain its last bytes before being aborted."""
    memory_budget: int = 256 * 1024 * 1024
    """Bytes all channels together may retain (history, reducer state, cached snapshots). Over
    it, ended channels are dropped first (oldest ended first), then the oldest history of open
    channels, whose subscribers then resume from the snapshot (``runcast.history_lost``)."""

    def __post_init__(self) -> None:
        # A sweep interval of 0 spun a core; NaN slept the housekeeping (heartbeats, expiry)
        # forever; a negative or NaN time made every comparison with it false or true alike.
        for name in ("sweep_interval", "close_timeout", "idle_ttl"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ConfigError(f"hub {name} must be a finite number > 0, got {value!r}")
        for name in ("retention", "pending_grace", "heartbeat_interval", "coalesce_ms"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ConfigError(f"hub {name} must be a finite number >= 0, got {value!r}")


class ChannelStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    epoch: str
    """The epoch of the channel's log (see the module docstring)."""
    last_seq: int
    first_seq: int
    """Oldest seq held in history (``last_seq + 1`` when history is empty)."""
    history_events: int
    history_bytes: int
    subscribers: int
    ended: bool
    events_published: int
    bytes_published: int
    lagged: int
    """Subscribers cut off for overflowing their buffer, since the channel was created."""
    disconnected: int
    retained_bytes: int = 0
    """What the channel holds against the memory budget: history, reducer state, snapshot."""


class BrokerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    channels: int
    pending_channels: int
    subscribers: int
    events_published: int
    bytes_published: int
    lagged: int
    disconnected: int
    channels_dropped: int
    retained_bytes: int = 0
    """Bytes held by every channel against ``HubSettings.memory_budget``."""
    memory_budget: int = 0
    channels_evicted: int = 0
    delivered: dict[str, int] = msgspec.field(default_factory=dict)
    """Events written to subscribers (one per event per subscriber), by frame format."""
    ends: dict[str, int] = msgspec.field(default_factory=dict)
    """Subscriptions ended, by reason (``EndReason``)."""
    resumes: int = 0
    """Subscriptions that asked to resume after a seq."""
    history_misses: int = 0
    """Resumes from a seq no longer in history (answered with ``runcast.history_lost``)."""
    """Ended channels dropped before their retention was over, to stay within the budget."""
    events_evicted: int = 0
    """Events dropped from open channels' history to stay within the budget."""
    round_trips: int = 0
    """Calls to a networked broker's server (one per pipeline); 0 in memory mode."""
    errors: int = 0
    """Calls to a networked broker's server that failed (connection lost, timeout)."""


class Reducer(Protocol):
    """Folds a channel's events into a state whose JSON is served as the snapshot.

    ``apply`` is called synchronously for every published event, in seq order; it must be cheap and
    must not raise for unknown events (an exception is logged and the event skipped).
    """

    def apply(self, event: HubEvent) -> None: ...

    def snapshot(self) -> bytes: ...


class SizedReducer(Reducer, Protocol):
    """A reducer that estimates the bytes its state holds, charged to the memory budget (a reducer
    without ``nbytes`` is charged nothing)."""

    @property
    def nbytes(self) -> int: ...


ReducerFactory = Callable[[str], Reducer | None]

Numbered = Callable[[Mapping[str, "Position"]], None]
"""``Broker.publish``'s ``first``: given each channel's first position of the batch, once it is
numbered and before this node writes it to any subscriber."""
"""Called with a channel name when the channel is created; None means no snapshots for it."""


@runtime_checkable
class Sink(Protocol):
    """A subscriber's output. The broker calls these synchronously; none may block or await.

    ``start`` is called once with the channel's epoch before anything else (the epoch of the seqs
    this sink receives, for its own notices). ``send`` receives pre-encoded wire bytes in ``frame_format`` (the same object for every sink of
    that format) and the seq of the batch's last event; it returns False when the sink is finished
    (peer gone, or cut off for lagging; ``end_reason`` says which) and must be detached.
    ``heartbeat`` writes a keep-alive and ``poll`` only checks, both returning False likewise.
    ``end`` is final and idempotent: no ``send`` follows it. ``rewind`` ends it too, telling the
    subscriber to resume from ``seq``: what it got after that is not the log's (Redis mode).
    ``last_seq`` is where the subscriber stands: the seq of the last event written to it, or,
    for one that joined live, the channel's last seq then (what its notices name).
    """

    last_seq: int

    @property
    def frame_format(self) -> FrameFormat: ...

    @property
    def end_reason(self) -> EndReason | None: ...

    def start(self, epoch: str) -> None: ...

    def send(self, frames: bytes, last_seq: int) -> bool: ...

    def heartbeat(self) -> bool: ...

    def poll(self) -> bool: ...

    def end(self, reason: EndReason) -> None: ...

    def rewind(self, seq: int) -> None: ...


class Subscription(Protocol):
    """The handle :meth:`Broker.subscribe` returns. ``close`` detaches the sink (idempotent)."""

    @property
    def channel(self) -> str: ...

    def close(self) -> None: ...


class Broker(Protocol):
    """Channels of ordered, numbered events with history, snapshots and fan-out.

    Usage (memory mode)::

        async with MemoryBroker(HubSettings(), reducer_factory=make_reducer) as broker:
            firsts = await broker.publish(
                ["run:run_1", "thread:th_1"], [HubEvent("thread.run.created", b"{...}")]
            )
            # {"run:run_1": Position("9f3a", 1), "thread:th_1": Position("77c0", 7)}: the
            # position each channel gave the batch's first event
            sub = await broker.subscribe("run:run_1", sink, since=START)
            ...
            await broker.close_channel("run:run_1")
    """

    @property
    def settings(self) -> HubSettings: ...

    async def publish(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        *,
        fence: Fence | None = None,
        first: Numbered | None = None,
    ) -> Mapping[str, Position]:
        """Append ``events`` to each channel (created on first use) and write them to subscribers.

        Returns, for each of ``channels`` (distinct names), the position its first event got
        there: in channel ``c`` the batch is numbered ``firsts[c].seq .. firsts[c].seq +
        len(events) - 1`` in epoch ``firsts[c].epoch``, contiguous
        whoever else publishes to ``c`` (a batch is appended to a channel in one step). These are
        the numbers a publisher hands on (the creator's ``id:`` lines); reading
        :meth:`channel_statistics` after publishing would race with other publishers. An empty
        batch stores nothing, creates no channel and returns ``{}``.

        Never waits for a subscriber. Publishing to an ended channel reopens it (a run continues
        after ``submit_tool_outputs``). A name holding CR or LF raises ``ValueError`` and nothing
        of the batch is stored; a closed broker raises ``RuntimeError``.

        ``fence``: the publisher's lease on its run; a broker shared by several processes
        refuses the batch (:class:`StaleFence`, nothing stored) when the run's lease has been
        handed to someone else since (memory mode has one process and ignores it).

        ``first``: called once with the positions above, after the batch is numbered and stored
        and before this node writes it to any subscriber, so the publisher's own copy (a run's
        creator) can go out first; not called when nothing was stored. (On Redis, while the
        broker holds batches through an outage, it is called after the local subscribers.)
        """
        ...

    async def subscribe(
        self,
        channel: str,
        sink: Sink,
        *,
        since: Position | None = None,
        snapshot: bool = False,
        create: bool = False,
        owner: str | None = None,
    ) -> Subscription:
        """Attach ``sink``: first what it asked for from the past, then live events, atomically.

        ``since=Position(e, n)`` replays events ``n+1..`` of epoch ``e`` from history (seq ``0``:
        from the start, :data:`START`); a position of another epoch, or not in history, gets ``runcast.history_lost`` then the snapshot (or all history held, without a
        reducer). ``since=None, snapshot=True`` sends ``runcast.snapshot`` first (all history held
        without a reducer). ``since=None, snapshot=False`` is live only. A channel that has ended
        gets its replay and then ``end("ended")``.

        An unknown channel raises ``SubscriberError(404, "unknown_channel")`` unless ``create``
        (thread channels, subscribed before their next run); a channel created so is pending
        until its first event and counts against ``owner`` (an opaque client key, such as its
        address; None counts against nobody). Limits raise ``SubscriberError(429,
        "too_many_subscribers" | "too_many_channels" | "too_many_channels_per_client")``, a
        closed broker ``SubscriberError(503, "shutting_down")``.
        """
        ...

    async def close_channel(self, channel: str) -> None:
        """Mark the channel ended: subscribers get ``end("ended")``, history is kept ``retention``."""
        ...

    async def snapshot(self, channel: str) -> Snapshot | None:
        """The channel's current snapshot (``data == b"null"`` without a reducer); None if unknown."""
        ...

    async def channel_info(self, channel: str) -> ChannelStatistics | None:
        """The channel's log position and counters as this broker knows them; None if unknown."""
        ...

    def channel_statistics(self, channel: str) -> ChannelStatistics | None:
        """What this process holds of the channel (no I/O); None if it holds nothing."""
        ...

    async def held(self, channel: str) -> ChannelStatistics | None:
        """What this process holds of the channel once it has read the channel from the shared
        log, as subscribing would (a channel another node publishes); None if no node has it."""
        ...

    def statistics(self) -> BrokerStatistics: ...

    async def aclose(self) -> None:
        """End every subscription with ``shutdown`` and stop the broker's task. Idempotent.

        Afterwards ``publish`` raises ``RuntimeError`` and ``subscribe`` answers 503.
        """
        ...
