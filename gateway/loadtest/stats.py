"""Load-test measurements: mergeable log-scale histograms, run/event counters, a per-second timeline.

:class:`LatencyHistogram` works like HdrHistogram with a fixed relative precision: a value ``v``
lands in bucket ``floor(log(v / lowest) / log(1 + precision))``, so memory is a fixed array sized
by the range (about 2,300 counters for 1 us .. 1 h at 1 %), whatever the number of samples, and a
percentile is off by at most ``precision`` relative to the true sample (min and max are exact).
Two histograms with the same range and precision merge by adding their counters, which is how the
figures of ``--processes`` workers are combined. :class:`SignedHistogram` holds differences that
may be negative (``--compare``'s paired added latency) in two of them. Everything here pickles
(workers send it back).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

__all__ = [
    "MAX_KEPT_EVENTS",
    "PERCENTILES",
    "LatencyHistogram",
    "LoadStats",
    "SignedHistogram",
    "Timeline",
]

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
)
"""The percentiles every summary reports, with their JSON keys."""

MAX_KEPT_EVENTS = 100_000
"""Upstream events of one copy of a run (the creator's, each subscriber's) whose time and digest
are kept to match the copies and time deliveries: about 1.7 MB a copy. Past it, a stream that
never ends would grow the generator without bound; its further events are counted only."""


class LatencyHistogram:
    """Counts of values (seconds) in log-spaced buckets; exact count, sum, min and max."""

    __slots__ = ("_counts", "_log_base", "count", "highest", "lowest", "max", "min", "total")

    def __init__(
        self, *, lowest: float = 1e-6, highest: float = 3600.0, precision: float = 0.01
    ) -> None:
        if not 0 < lowest < highest or not 0 < precision < 1:
            raise ValueError("need 0 < lowest < highest and 0 < precision < 1")
        self.lowest = lowest
        self.highest = highest
        self._log_base = math.log1p(precision)
        self._counts = array("Q", bytes(8 * (self._index(highest) + 1)))
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _index(self, value: float) -> int:
        return int(math.log(value / self.lowest) / self._log_base)

    def _value(self, index: int) -> float:
        # Geometric middle of the bucket: at most `precision` from any value in it.
        return self.lowest * math.exp((index + 0.5) * self._log_base)

    @property
    def buckets(self) -> int:
        return len(self._counts)

    def record(self, value: float) -> None:
        """Add one value; values outside ``[lowest, highest]`` count in the edge buckets."""
        clamped = min(max(value, self.lowest), self.highest)
        self._counts[self._index(clamped)] += 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s samples to this one; both must share range and precision."""
        if (other.lowest, other.highest, other._log_base) != (
            self.lowest,
            self.highest,
            self._log_base,
        ):
            raise ValueError("only histograms of the same range and precision merge")
        for index, n in enumerate(other._counts):
            if n:
                self._counts[index] += n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float | None:
        """The value below which ``p`` percent of the samples fall (None when empty)."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be in [0, 100]")
        if self.count == 0:
            return None
        return self.at_rank(math.ceil(p / 100 * self.count))

    def at_rank(self, rank: int) -> float:
        """The ``rank``-th smallest sample (1-based, clamped to the samples held)."""
        # The extremes are known exactly; no need for a bucket's estimate.
        if rank <= 1:
            return self.min
        if rank >= self.count:
            return self.max
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(max(self._value(index), self.min), self.max)
        return self.max

    def cdf(self) -> list[tuple[float, float]]:
        """(value, fraction of samples <= it) per non-empty bucket, for plotting."""
        points: list[tuple[float, float]] = []
        seen = 0
        for index, n in enumerate(self._counts):
            if n:
                seen += n
                value = min(max(self._value(index), self.min), self.max)
                points.append((value, seen / self.count))
        if points:
            points[-1] = (self.max, 1.0)  # known exactly
        return points

    def summary(self, scale: float = 1000.0) -> dict[str, float | int | None]:
        """count, min, mean, p50, p90, p99, p99.9, max times ``scale`` (ms by default)."""

        def scaled(value: float | None) -> float | None:
            return None if value is None else round(value * scale, 3)

        empty = self.count == 0
        row: dict[str, float | int | None] = {
            "count": self.count,
            "min": None if empty else scaled(self.min),
            "mean": None if empty else scaled(self.total / self.count),
        }
        for key, p in PERCENTILES:
            row[key] = scaled(self.percentile(p))
        row["max"] = None if empty else scaled(self.max)
        return row

    def summary_ms(self) -> dict[str, float | int | None]:
        return self.summary(1000.0)


class SignedHistogram:
    """Values of either sign, each side in a :class:`LatencyHistogram` of its magnitudes."""

    __slots__ = ("negative", "positive")

    def __init__(self, *, precision: float = 0.01) -> None:
        self.positive = LatencyHistogram(precision=precision)
        """Values >= 0 (below ``lowest`` they count in its first bucket)."""
        self.negative = LatencyHistogram(precision=precision)
        """Magnitudes of the values < 0."""

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def count(self) -> int:
        return self.positive.count + self.negative.count

    def record(self, value: float) -> None:
        if value >= 0:
            self.positive.record(value)
        else:
            self.negative.record(-value)

    def merge(self, other: SignedHistogram) -> None:
        self.positive.merge(other.positive)
        self.negative.merge(other.negative)

    def percentile(self, p: float) -> float | None:
        """As :meth:`LatencyHistogram.percentile`, over both signs."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be in [0, 100]")
        if self.count == 0:
            return None
        rank = max(math.ceil(p / 100 * self.count), 1)
        below = self.negative.count
        if rank <= below:
            # The rank-th smallest value is the (below - rank + 1)-th largest magnitude.
            return -self.negative.at_rank(below - rank + 1)
        return self.positive.at_rank(rank - below)


class Timeline:
    """Per-second counters, indexed by whole seconds since the test's shared start time."""

    COLUMNS = ("started", "completed", "failed", "cut", "events", "chars", "subscriber_errors")

    def __init__(self) -> None:
        self.rows: dict[int, list[int]] = {}

    def add(self, second: float, column: str, n: int = 1) -> None:
        row = self.rows.get(int(second))
        if row is None:
            row = self.rows[int(second)] = [0] * len(self.COLUMNS)
        row[self.COLUMNS.index(column)] += n

    def merge(self, other: Timeline) -> None:
        for second, values in other.rows.items():
            row = self.rows.setdefault(second, [0] * len(self.COLUMNS))
            for i, n in enumerate(values):
                row[i] += n

    def to_list(self, seconds: int) -> list[dict[str, int]]:
        """One row per second from 0 to ``seconds`` (or the last second with data)."""
        last = max([seconds - 1, *self.rows])
        zero = [0] * len(self.COLUMNS)
        return [
            {"t": t, **dict(zip(self.COLUMNS, self.rows.get(t, zero), strict=True))}
            for t in range(last + 1)
        ]


RUN_OK = "completed"
RUN_CUT = "cut"


class LoadStats:
    """Everything one load test measures against one target; mergeable across processes."""

    def __init__(self) -> None:
        self.runs_started = 0
        self.arrivals_dropped = 0
        """Open-loop arrivals that found ``concurrency`` runs already in flight."""
        self.outcomes: Counter[str] = Counter()
        """Runs by outcome: ``completed``, ``cut`` (deadline or stop) or a failure kind."""
        self.errors: Counter[str] = Counter()
        """Client-side subscriber errors by kind (the run itself may have succeeded)."""
        self.error_details: dict[str, str] = {}
        """The target's own words (``code: message``) for the first error of each kind that
        had some (``errors.py``)."""
        self.creator_events = 0
        self.subscriber_events = 0
        self.creator_bytes = 0
        self.subscriber_bytes = 0
        self.output_chars = 0
        self.runs_broken = 0
        """Completed runs that a subscriber did not read whole (failed runs are in outcomes)."""
        self.subscribers_complete = 0
        self.subscribers_cut = 0
        self.gaps = 0
        """Events of the creator's copy missing from a subscriber's copy."""
        self.duplicates = 0
        """Events a subscriber received more often than the creator did."""
        self.reordered = 0
        """Events of a subscriber's copy holding the same events as the creator's, in another
        order: each one in a place other than the creator's."""
        self.deliveries = 0
        self.subscriber_first = 0
        """Deliveries that reached a subscriber before the creator's copy (counted as 0 lag)."""
        self.replayed = 0
        """Events the creator had before a subscriber joined (Responses/Chat subscribers join
        once the response names its channel): matched for gaps, not timed as deliveries."""
        self.events_unkept = 0
        """Creator events past ``MAX_KEPT_EVENTS`` in their run: counted, neither timed against
        the compared server nor matched."""
        self.subscribers_unmatched = 0
        """Subscribers' copies not matched to their creator's: one of them passed the cap."""
        self.run_duration = LatencyHistogram()
        self.ttfe = LatencyHistogram()
        self.ttft = LatencyHistogram()
        self.inter_delta = LatencyHistogram()
        self.delivery_lag = LatencyHistogram()
        self.event_latency = LatencyHistogram(precision=0.001)
        """Each upstream event's arrival at the creator, from its run's first request."""
        self.added_event = SignedHistogram(precision=0.001)
        """``--compare``: each upstream event's latency minus that of the same event of the run
        started with it against the compared server (paired: what slows the host at that moment
        slows both). Filled in the target's stats only."""
        self.added_ttfe = SignedHistogram(precision=0.001)
        """``--compare``: the same for each pair's first event."""
        self.chars_per_s = LatencyHistogram(lowest=1e-3, highest=1e9)
        self.loop_lag = LatencyHistogram()
        self.timeline = Timeline()
        self.elapsed = 0.0
        self.cpu_s = 0.0
        self.max_cpu_fraction = 0.0
        """The busiest generator process's CPU time over wall time (1.0 = one core)."""
        self.gave_up: str | None = None
        """Why the load stopped early: the target refused every connection for ``give_up``."""

    @property
    def runs_ok(self) -> int:
        return self.outcomes[RUN_OK]

    @property
    def runs_cut(self) -> int:
        return self.outcomes[RUN_CUT]

    @property
    def failed(self) -> dict[str, int]:
        return {k: n for k, n in self.outcomes.items() if k not in (RUN_OK, RUN_CUT) and n}

    @property
    def runs_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def runs_finished(self) -> int:
        """Runs that reached an outcome of their own (cut runs did not)."""
        return self.runs_ok + self.runs_failed

    @property
    def bad_deliveries(self) -> int:
        return self.gaps + self.duplicates + self.reordered

    def error_rate(self) -> float:
        """Runs with an error (failed, whatever the step, or completed with a subscriber's copy
        broken) over finished runs."""
        if not self.runs_finished:
            return 0.0
        return (self.runs_failed + self.runs_broken) / self.runs_finished

    def explain(self, kind: str, text: str | None) -> None:
        """Keep ``text`` as what the target said about errors of ``kind`` (the first one)."""
        if text is not None and kind not in self.error_details:
            self.error_details[kind] = text

    def merge(self, other: LoadStats) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, LatencyHistogram | SignedHistogram | Timeline):
                mine.merge(value)
            elif isinstance(mine, Counter):
                mine.update(value)
            elif name == "error_details":
                for kind, text in value.items():
                    self.error_details.setdefault(kind, text)
            elif name == "elapsed":
                self.elapsed = max(self.elapsed, value)
            elif name == "max_cpu_fraction":
                self.max_cpu_fraction = max(self.max_cpu_fraction, value)
            elif name == "gave_up":
                self.gave_up = mine or value
            else:
                setattr(self, name, mine + value)
