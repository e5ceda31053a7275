"""The gateway's Prometheus metrics: one registry per app, its families, and what fills them.

Everything lives in a :class:`Metrics` built per app (never prometheus-client's global default
registry, so two apps in one process, and tests, do not share counters). Two ways in:

- **Hooks** where the work happens, off the per-subscriber path: a relay's :class:`RunMeter`
  (runs started and finished by protocol and outcome, events in from the upstream, time to first
  event, upstream stream duration, upstream errors by kind, delivery lag sampled one batch in
  ``LAG_SAMPLE``) and :meth:`Metrics.tool_call` (tool calls by outcome, with duration).
- **Statistics read at scrape time** by a custom collector, so the hot path pays nothing: runs
  active, events out to subscribers by transport, subscribers active by transport,
  subscriptions ended by reason, resumes and history misses, the memory budget in use, broker
  round trips and errors (any ``round_trips`` / ``errors`` a networked broker's statistics carry).
- **The cycle collector's pauses** by generation (``gateway.heap``), timed by ``gc.callbacks``.

No label carries a run, thread or response id: cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.heap import CollectorPauses
from gateway.hub import EndReason

__all__ = [
    "LAG_SAMPLE",
    "NO_METER",
    "Metrics",
    "RunMeter",
    "Sources",
]

LAG_SAMPLE = 16
"""One batch of upstream events (one read) in this many, and each stream's first, has its
delivery lag measured."""

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DURATION = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_LAG = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Sources(Protocol):
    """What the collector reads at scrape time (the app's statistics, see ``gateway.http.app``)."""

    def runs_active(self) -> int: ...

    def subscribers(self) -> dict[str, int]:
        """Subscribers connected now, by transport (``sse``, ``websocket``)."""
        ...

    def hub(self) -> object:
        """The broker's statistics (``BrokerStatistics``)."""
        ...


class Metrics:
    """The metric families of one gateway app and their registry (:meth:`exposition`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs_started = Counter(
            "runcast_runs_started", "Relayed runs started", ["protocol"], registry=r
        )
        self.runs_finished = Counter(
            "runcast_runs_finished",
            "Relayed runs finished, by how their relay ended",
            ["protocol", "outcome"],
            registry=r,
        )
        self.events_in = Counter(
            "runcast_events_in", "Events received from the upstream", ["protocol"], registry=r
        )
        self.time_to_first_event = Histogram(
            "runcast_time_to_first_event_seconds",
            "From opening an upstream stream to its first event",
            ["protocol"],
            buckets=_LATENCY,
            registry=r,
        )
        self.stream_duration = Histogram(
            "runcast_upstream_stream_duration_seconds",
            "How long each upstream stream stayed open",
            ["protocol"],
            buckets=_DURATION,
            registry=r,
        )
        self.delivery_lag = Histogram(
            "runcast_delivery_lag_seconds",
            f"From an upstream event's arrival to its frames in every subscriber's buffer "
            f"(one event in {LAG_SAMPLE})",
            buckets=_LAG,
            registry=r,
        )
        self.upstream_errors = Counter(
            "runcast_upstream_errors", "Upstream streams that failed, by kind", ["kind"], registry=r
        )
        self.tool_calls = Counter(
            "runcast_tool_calls", "Tool calls runcast answered, by outcome", ["outcome"], registry=r
        )
        self.tool_call_duration = Histogram(
            "runcast_tool_call_duration_seconds",
            "Time a tool handler took, by outcome",
            ["outcome"],
            buckets=_LATENCY,
            registry=r,
        )
        self.gc_pauses = CollectorPauses(r)
        """Installed for the app's lifetime (``gateway.http.exposition.gc_pauses_ctx``)."""

    def watch(self, sources: Sources) -> None:
        """Read ``sources`` at every scrape (once per app, when its statistics exist)."""
        self.registry.register(_StatisticsCollector(sources))

    def meter(self, protocol: str) -> RunMeter:
        return RunMeter(self, protocol)

    def tool_call(self, outcome: str, seconds: float) -> None:
        self.tool_calls.labels(outcome).inc()
        self.tool_call_duration.labels(outcome).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RunMeter:
    """One relay's hooks; the labelled children are looked up once, not per event.

    Events are counted in a plain int and added to the counter every ``_FLUSH`` events and when
    a stream closes (a prometheus-client ``inc`` takes a lock); the clock is read only for a
    stream's first batch and the sampled ones.
    """

    __slots__ = (
        "_duration",
        "_events",
        "_first",
        "_lag",
        "_metrics",
        "_n",
        "_protocol",
        "_unflushed",
    )

    def __init__(self, metrics: Metrics | None, protocol: str) -> None:
        self._metrics = metrics
        self._protocol = protocol
        self._n = 0
        self._unflushed = 0
        if metrics is None:
            return
        metrics.runs_started.labels(protocol).inc()
        self._events = metrics.events_in.labels(protocol)
        self._first = metrics.time_to_first_event.labels(protocol)
        self._duration = metrics.stream_duration.labels(protocol)
        self._lag = metrics.delivery_lag

    def opened(self) -> float:
        """An upstream stream is being opened: the time to pass to :meth:`event` and
        :meth:`closed`."""
        self._n = 0
        return time.perf_counter()

    def batch(self, opened: float, events: int) -> float:
        """A batch of upstream events arrived (one read); a start time when this batch's
        delivery lag is sampled (pass it to :meth:`delivered`), else 0."""
        if self._metrics is None:
            return 0.0
        self._n += 1
        self._unflushed += events
        if self._unflushed >= _FLUSH:
            self._events.inc(self._unflushed)
            self._unflushed = 0
        if self._n == 1:
            now = time.perf_counter()
            self._first.observe(now - opened)
            return now
        return time.perf_counter() if self._n % LAG_SAMPLE == 1 else 0.0

    def delivered(self, arrived: float) -> None:
        if arrived:
            self._lag.observe(time.perf_counter() - arrived)

    def closed(self, opened: float) -> None:
        if self._metrics is not None:
            if self._unflushed:
                self._events.inc(self._unflushed)
                self._unflushed = 0
            self._duration.observe(time.perf_counter() - opened)

    def failed(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_errors.labels(kind).inc()

    def finished(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.runs_finished.labels(self._protocol, outcome).inc()


_FLUSH = 32


NO_METER = RunMeter(None, "")
"""A meter that records nothing (``--metrics off``, or a relay built without metrics)."""


class _StatisticsCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        hub = sources.hub()
        yield _gauge("runcast_runs_active", "Runs being relayed now", sources.runs_active())
        subscribers = GaugeMetricFamily(
            "runcast_subscribers_active", "Subscribers connected now", labels=["transport"]
        )
        for transport, count in sorted(sources.subscribers().items()):
            subscribers.add_metric([transport], count)
        yield subscribers
        out = CounterMetricFamily(
            "runcast_events_out",
            "Events written to subscribers (one per event per subscriber), by transport",
            labels=["protocol"],
        )
        delivered = {"sse": 0, "websocket": 0}
        for fmt, count in _get(hub, "delivered", {}).items():
            transport = "websocket" if fmt == "websocket" else "sse"
            delivered[transport] = delivered.get(transport, 0) + count
        for transport, count in sorted(delivered.items()):
            out.add_metric([transport], count)
        yield out
        ended = CounterMetricFamily(
            "runcast_subscriptions_ended", "Subscriptions that ended, by reason", labels=["reason"]
        )
        ends = dict.fromkeys(get_args(EndReason), 0)
        ends.update(_get(hub, "ends", {}))
        for reason, count in sorted(ends.items()):
            ended.add_metric([reason], count)
        yield ended
        yield _counter(
            "runcast_resumes", "Subscriptions resuming after a seq", _get(hub, "resumes")
        )
        yield _counter(
            "runcast_history_misses",
            "Resumes from a seq no longer in history (runcast.history_lost, then the snapshot)",
            _get(hub, "history_misses"),
        )
        yield _gauge(
            "runcast_memory_budget_used_bytes",
            "Bytes retained by all channels (history, snapshots) against the memory budget",
            _get(hub, "retained_bytes"),
        )
        yield _gauge(
            "runcast_memory_budget_limit_bytes", "The memory budget", _get(hub, "memory_budget")
        )
        yield _counter(
            "runcast_broker_round_trips",
            "Requests to a networked broker (0 with the in-process broker)",
            _get(hub, "round_trips"),
        )
        yield _counter(
            "runcast_broker_errors",
            "Failed requests to a networked broker",
            _get(hub, "errors"),
        )


def _get(stats: object, name: str, default: Any = 0) -> Any:
    return getattr(stats, name, default)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
