"""Load-test measurements: log-scale latency histograms and run/event counters, bounded in size.

:class:`LatencyHistogram` works like HdrHistogram with a fixed relative precision: a value ``v``
lands in bucket ``floor(log(v / lowest) / log(1 + precision))``, so memory is a fixed array sized
by the range (about 2,300 counters for 1 us .. 1 h at 1 %), whatever the number of samples, and a
percentile is off by at most ``precision`` relative to the true sample (min and max are exact).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

__all__ = ["LatencyHistogram", "LoadStats"]


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

    def _index(self, value: float) -> int:
        return int(math.log(value / self.lowest) / self._log_base)

    @property
    def buckets(self) -> int:
        return len(self._counts)

    def record(self, value: float) -> None:
        """Add one value; values outside ``[lowest, highest]`` count in the edge buckets."""
        clamped = min(max(value, self.lowest), self.highest)
        self._counts[self._index(clamped)] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def percentile(self, p: float) -> float | None:
        """The value below which ``p`` percent of the samples fall (None when empty)."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be in [0, 100]")
        if self.count == 0:
            return None
        rank = math.ceil(p / 100 * self.count)
        # The extremes are known exactly; no need for a bucket's estimate.
        if rank <= 1:
            return self.min
        if rank >= self.count:
            return self.max
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                # Geometric middle of the bucket: at most `precision` from any value in it.
                middle = self.lowest * math.exp((index + 0.5) * self._log_base)
                return min(max(middle, self.min), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | int | None]:
        """count, min, mean, p50, p95, p99, max in milliseconds (None when empty)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        empty = self.count == 0
        return {
            "count": self.count,
            "min": None if empty else ms(self.min),
            "mean": None if empty else ms(self.total / self.count),
            "p50": ms(self.percentile(50)),
            "p95": ms(self.percentile(95)),
            "p99": ms(self.percentile(99)),
            "max": None if empty else ms(self.max),
        }


class LoadStats:
    """Everything one load test measures; owned by its driver, read by the report."""

    def __init__(self) -> None:
        self.runs_started = 0
        self.runs_ok = 0
        self.runs_interrupted = 0
        self.failed: Counter[str] = Counter()
        """Failed runs by kind: ``http_<status>``, ``run_<status>``, ``error_event``, ..."""
        self.errors: Counter[str] = Counter()
        """Client-side subscriber errors by kind (the run itself may have succeeded)."""
        self.creator_events = 0
        self.subscriber_events = 0
        self.creator_bytes = 0
        self.subscriber_bytes = 0
        self.subscribers_complete = 0
        self.delivery_mismatches = 0
        """Subscribers that finished with a different number of upstream events than the creator."""
        self.subscriber_ahead = 0
        """Subscriber deliveries that arrived before the creator's copy of the same event."""
        self.run_duration = LatencyHistogram()
        self.ttfe = LatencyHistogram()
        self.delivery_lag = LatencyHistogram()
        self.elapsed = 0.0

    @property
    def runs_failed(self) -> int:
        return sum(self.failed.values())
