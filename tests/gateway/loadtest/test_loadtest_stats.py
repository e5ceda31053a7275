"""LatencyHistogram: percentiles within its precision, fixed memory."""

from __future__ import annotations

import random

import pytest

from gateway.loadtest.stats import LatencyHistogram


def test_loadtest_percentiles_of_known_data_are_within_precision() -> None:
    hist = LatencyHistogram(precision=0.01)
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s
    random.Random(4).shuffle(values)
    for value in values:
        hist.record(value)
    for p, expected in ((50, 0.5), (95, 0.95), (99, 0.99), (100, 1.0)):
        got = hist.percentile(p)
        assert got is not None
        assert abs(got - expected) <= 0.01 * expected
    assert hist.percentile(0) == 0.001
    assert (hist.count, hist.min, hist.max) == (1000, 0.001, 1.0)
    summary = hist.summary_ms()
    assert summary["count"] == 1000
    assert summary["mean"] == pytest.approx(500.5, rel=1e-6)
    assert summary["p99"] == pytest.approx(990, rel=0.01)


def test_loadtest_histogram_memory_does_not_grow_with_samples() -> None:
    hist = LatencyHistogram()
    buckets = hist.buckets
    rng = random.Random(1)
    for _ in range(200_000):
        hist.record(rng.expovariate(100))
    assert hist.buckets == buckets < 3000
    assert hist.count == 200_000


def test_loadtest_histogram_edges() -> None:
    hist = LatencyHistogram(lowest=1e-3, highest=10.0)
    assert hist.percentile(50) is None
    assert hist.summary_ms()["p50"] is None
    hist.record(0.0)
    hist.record(100.0)
    assert hist.percentile(0) == 0.0  # the exact minimum, below the range
    assert hist.percentile(100) == 100.0  # and maximum, above it
    hist.record(50.0)
    assert hist.percentile(50) == pytest.approx(10.0, rel=0.01)  # the top edge bucket
    with pytest.raises(ValueError):
        hist.percentile(101)
    with pytest.raises(ValueError):
        LatencyHistogram(lowest=1.0, highest=1.0)
