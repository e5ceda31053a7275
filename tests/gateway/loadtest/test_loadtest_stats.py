"""LatencyHistogram: percentiles within its precision, fixed memory."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from gateway.loadtest import LoadSettings
from gateway.loadtest.report import environment, render_table, to_dict
from gateway.loadtest.stats import LatencyHistogram, LoadStats, SignedHistogram


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


def test_loadtest_histograms_merge_exactly_and_survive_pickling() -> None:
    import pickle

    rng = random.Random(3)
    values = [rng.expovariate(200) for _ in range(20_000)]
    whole, left, right = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, value in enumerate(values):
        whole.record(value)
        (left if i % 3 else right).record(value)
    left = pickle.loads(pickle.dumps(left))  # how --processes workers send them
    left.merge(right)
    assert left.summary_ms() == whole.summary_ms()
    assert set(whole.summary_ms()) == {"count", "min", "mean", "p50", "p90", "p99", "p99_9", "max"}
    summary = whole.summary_ms()
    assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["p99_9"] <= summary["max"]  # type: ignore[operator]
    with pytest.raises(ValueError):
        left.merge(LatencyHistogram(precision=0.02))


def test_loadtest_signed_percentiles_match_sorted_samples_and_merge() -> None:
    import pickle

    rng = random.Random(5)
    values = [rng.gauss(0.002, 0.004) for _ in range(10_001)]  # about 30 % below zero
    whole, left, right = SignedHistogram(), SignedHistogram(), SignedHistogram()
    for i, value in enumerate(values):
        whole.record(value)
        (left if i % 2 else right).record(value)
    left = pickle.loads(pickle.dumps(left))
    left.merge(right)
    ordered = sorted(values)
    for p in (0.0, 1.0, 10.0, 31.0, 50.0, 90.0, 99.0, 100.0):
        exact = ordered[max(math.ceil(p / 100 * len(values)), 1) - 1]
        for hist in (whole, left):
            got = hist.percentile(p)
            assert got is not None
            assert abs(got - exact) <= 0.01 * abs(exact) + 1e-6, (p, got, exact)
    assert whole.percentile(0) == min(values) and whole.percentile(100) == max(values)
    assert SignedHistogram().percentile(50) is None
    only_negative = SignedHistogram()
    for value in (-0.003, -0.001, -0.002):
        only_negative.record(value)
    assert only_negative.percentile(50) == pytest.approx(-0.002, rel=0.01)


def test_loadtest_cdf_is_monotonic_and_ends_at_one() -> None:
    hist = LatencyHistogram()
    for value in (0.001, 0.002, 0.002, 0.5):
        hist.record(value)
    points = hist.cdf()
    assert [f for _, f in points] == [0.25, 0.75, 1.0]
    assert points[0][0] == pytest.approx(0.001, rel=0.01) and points[-1][0] == 0.5


def test_loadtest_stats_merge_counters_timeline_and_cpu() -> None:
    from gateway.loadtest.stats import LoadStats

    a, b = LoadStats(), LoadStats()
    a.outcomes.update({"completed": 3, "cut": 1})
    b.outcomes.update({"completed": 2, "run_failed": 1})
    a.runs_with_errors, b.runs_with_errors = 0, 1
    a.timeline.add(0.2, "completed", 3)
    b.timeline.add(1.7, "failed")
    a.max_cpu_fraction, b.max_cpu_fraction = 0.4, 0.7
    a.elapsed, b.elapsed = 2.0, 2.5
    a.ttft.record(0.01)
    b.ttft.record(0.03)
    a.merge(b)
    assert (a.runs_ok, a.runs_cut, a.runs_failed, a.runs_finished) == (5, 1, 1, 6)
    assert a.error_rate() == pytest.approx(1 / 6)
    assert a.max_cpu_fraction == 0.7 and a.elapsed == 2.5
    assert a.ttft.count == 2
    rows = a.timeline.to_list(3)
    assert [r["t"] for r in rows] == [0, 1, 2]
    assert (rows[0]["completed"], rows[1]["failed"], rows[2]["started"]) == (3, 1, 0)


def test_loadtest_ramp_stages_and_arrival_gaps() -> None:
    from gateway.errors import ConfigError
    from gateway.loadtest.shape import arrivals, level_at, parse_ramp

    stages = parse_ramp("10:5, 10:5s,0:10")
    assert [level_at(stages, t) for t in (0, 2.5, 5, 7, 10, 15, 20, 99)] == [
        0,
        5,
        10,
        10,
        10,
        5,
        0,
        0,
    ]
    for bad in ("10", "x:5", "10:0", "-1:5", "10:nan", ""):
        with pytest.raises(ConfigError, match="--ramp"):
            parse_ramp(bad)
    rng = random.Random(5)
    constant = list(arrivals(lambda t: 4.0, poisson=False, rng=rng, horizon=1.0))
    assert constant == pytest.approx([0.25, 0.5, 0.75])
    poisson = list(arrivals(lambda t: 100.0, poisson=True, rng=rng, horizon=200.0))
    assert len(poisson) == pytest.approx(20_000, rel=0.03)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(poisson)}
    assert len(gaps) > 19_000  # exponential, not constant
    # A ramp 0 -> 40/s over 1 s then held: about 20 arrivals in the first second, 40 in the next.
    ramp = parse_ramp("40:1")
    ramped = list(arrivals(lambda t: level_at(ramp, t), poisson=False, rng=rng, horizon=2.0))
    assert sum(t < 1 for t in ramped) == pytest.approx(20, abs=1)
    assert sum(t >= 1 for t in ramped) == pytest.approx(40, abs=1)


def test_a_figure_not_measured_is_a_dash_without_a_unit() -> None:
    report = to_dict(
        LoadSettings(embedded=True),
        ["http://x"],
        [LoadStats()],
        environment(event_loop="x", started=0.0),
    )
    text = render_table(report)
    assert "event loop lag p99 -" in text and "- ms" not in text
