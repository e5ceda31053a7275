"""Fan-out hub: channels of numbered events, history, snapshots, and SSE/WebSocket subscribers.

Layers, one module each:

- ``broker``: the :class:`Broker` protocol, :class:`HubEvent`, :class:`HubSettings`, statistics.
- ``backlog``: :class:`LagPolicy`, when an output that is behind its reader is cut off.
- ``frames``: wire encoding (SSE frames, HTTP chunks, WebSocket frames), once per batch and format.
- ``history``: a channel's bounded event history (events and bytes).
- ``channel``: one channel: seq, history, reducer, subscribers, fan-out of a batch, write coalescing.
- ``counters``: :class:`~gateway.hub.counters.HubCounters`, the totals every channel of a broker adds to.
- ``memory``: :class:`MemoryBroker`, the embedded single-process broker, and its housekeeping task.
- ``budget``: the global memory budget: what channels retain, and what goes first when over it.
- ``redacted``: a reducer factory whose snapshots never carry the upstream key.
- ``sinks``: subscriber outputs writing pre-encoded bytes straight to a socket transport.
- ``transports``: ``serve_sse`` / ``serve_websocket``, the aiohttp handlers' whole job.
- ``redis/``: :class:`~gateway.hub.redis.RedisBroker`, channel logs in Redis shared by every node,
  fanned out by this node's local channels (``channel``) like memory mode.

Usage from the gateway::

    from gateway.hub import HubEvent, HubSettings, MemoryBroker, serve_subscriber

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        async with MemoryBroker(HubSettings(), reducer_factory=make_reducer) as broker:
            app[BROKER] = broker
            yield

    # the upstream pump, for each decoded upstream event (or a batch of them); the result maps
    # each channel to the Position(epoch, seq) its first event got there (``<epoch>-<seq>`` is
    # the id to hand on, e.g. to the creator):
    firsts = await broker.publish([f"run:{run_id}", f"thread:{thread_id}"],
                                [HubEvent(sse.event, sse.data_bytes)])
    # ...and when the run's stream is over (its ``done`` event was published as usual):
    await broker.close_channel(f"run:{run_id}")

    # a subscriber endpoint (SSE, or WebSocket when the request is an upgrade):
    async def stream_run(request: web.Request) -> web.StreamResponse:
        since = since_from_request(request)  # Last-Event-ID or ?since=<epoch>-<seq>; 400 if bad
        return await serve_subscriber(request, request.app[BROKER], f"run:{run_id}",
                                      since=since, snapshot=request.query.get("snapshot") == "1")

``serve_*`` raise :class:`gateway.errors.SubscriberError` (404 unknown channel, 429 limits) before
any response byte is sent, so the caller can answer with its JSON error.
"""

from gateway.hub.backlog import LagPolicy
from gateway.hub.broker import (
    DEGRADED_EVENT,
    HISTORY_LOST_EVENT,
    LAGGED_EVENT,
    RESTORED_EVENT,
    SHUTDOWN_EVENT,
    SHUTDOWN_RETRY_MS,
    SNAPSHOT_EVENT,
    START,
    Broker,
    BrokerStatistics,
    ChannelStatistics,
    EndReason,
    Fence,
    FrameFormat,
    HubEvent,
    HubSettings,
    Numbered,
    Position,
    Reducer,
    ReducerFactory,
    Sink,
    Snapshot,
    StaleFence,
    Subscription,
    lagged_payload,
)
from gateway.hub.memory import MemoryBroker
from gateway.hub.sinks import BufferSink, TransportSink
from gateway.hub.transports import (
    is_websocket_request,
    serve_sse,
    serve_subscriber,
    serve_websocket,
    since_from_request,
)

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
    "BufferSink",
    "ChannelStatistics",
    "EndReason",
    "Fence",
    "FrameFormat",
    "HubEvent",
    "HubSettings",
    "LagPolicy",
    "MemoryBroker",
    "Numbered",
    "Position",
    "Reducer",
    "ReducerFactory",
    "Sink",
    "Snapshot",
    "StaleFence",
    "Subscription",
    "TransportSink",
    "is_websocket_request",
    "lagged_payload",
    "serve_sse",
    "serve_subscriber",
    "serve_websocket",
    "since_from_request",
]
