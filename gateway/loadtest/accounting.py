"""A run's accounting: what the creator's copy keeps (:class:`RunRecord`), and :func:`account`,
which adds a finished run to the target's stats and matches each subscriber's copy to the
creator's: events missing are gaps, extra ones duplicates, the same events in another order are
reordered; delivery lag is a subscriber's receipt minus the creator's of the same event (0 when
the subscriber's came first), and events the creator had before a subscriber joined are counted
as replayed, not timed.
"""

from __future__ import annotations

from array import array
from collections import Counter

from .protocols import Seen, digest
from .stats import MAX_KEPT_EVENTS, RUN_CUT, RUN_OK, LoadStats
from .subscribers import Subscriber

__all__ = ["RunRecord", "account"]


class RunRecord:
    """The creator's side of one run: its stream(s), timings and outcome.

    Per upstream event it keeps only what something reads: its time when subscribers or
    ``--compare`` will be matched against it, its digest and segment when subscribers will, and
    at most ``MAX_KEPT_EVENTS`` of them (``unkept`` counts the rest).
    """

    __slots__ = ("bytes", "chars", "digests", "events", "keep_digests", "keep_times", "last",
                 "segments", "sent", "started", "times", "ttfe", "ttft", "unkept")  # fmt: skip

    def __init__(self, *, keep_times: bool = True, keep_digests: bool = True) -> None:
        self.keep_times = keep_times or keep_digests
        self.keep_digests = keep_digests
        self.times = array("d")
        self.digests = array("q")
        self.segments = array("B")
        self.unkept = 0
        self.last: float | None = None
        """When the last upstream event came (``perf_counter``)."""
        self.events = 0
        self.bytes = 0
        self.chars = 0
        self.sent = 0.0
        self.ttfe: float | None = None
        self.ttft: float | None = None
        self.started = False
        """True once the server answered 200, i.e. the run exists and subscribers will see it."""

    def upstream(self, at: float, name: str, data: bytes, segment: int, seen: Seen) -> None:
        """One upstream event of the creator's copy, received at ``at``."""
        self.last = at
        if not self.keep_times:
            return
        if len(self.times) >= MAX_KEPT_EVENTS:
            self.unkept += 1
            return
        self.times.append(at)
        if self.keep_digests:
            self.digests.append(digest(name, data, seen))
            self.segments.append(min(segment, 255))


def account(
    stats: LoadStats,
    second: float,
    run: RunRecord,
    subscribers: list[Subscriber],
    outcome: str,
    *,
    channel_spans_run: bool,
) -> None:
    """Add one finished run, and its subscribers' copies matched to its own, to ``stats``."""
    stats.creator_events += run.events
    stats.creator_bytes += run.bytes
    stats.output_chars += run.chars
    stats.timeline.add(second, "events", run.events)
    stats.timeline.add(second, "chars", run.chars)
    if run.ttfe is not None:
        stats.ttfe.record(run.ttfe)
    if run.ttft is not None:
        stats.ttft.record(run.ttft)
    if outcome == RUN_OK and run.chars and run.last is not None:
        stats.chars_per_s.record(run.chars / max(run.last - run.sent, 1e-9))
    stats.events_unkept += run.unkept
    # Built for the first copy to match only: a run cut at the deadline (maybe with millions
    # of events) costs nothing here, so the cut is prompt.
    mine: tuple[array[float], array[int], Counter[int]] | None = None
    broken = outcome not in (RUN_OK, RUN_CUT)
    for sub in subscribers:
        stats.subscriber_events += sub.events
        stats.subscriber_bytes += sub.bytes
        if outcome == RUN_CUT:
            stats.subscribers_cut += 1
            continue
        if sub.error is None and not sub.finished and run.started:
            sub.error = "subscriber_incomplete"
        if sub.error is not None:
            if run.started:
                broken = True
                stats.errors[sub.error] += 1
                stats.explain(sub.error, sub.detail)
                stats.timeline.add(second, "subscriber_errors")
            continue
        if not run.started:
            continue  # no run to follow: neither complete nor an error of theirs
        stats.subscribers_complete += 1
        if outcome != RUN_OK:
            continue  # the creator's response stopped early; the channel went on
        if run.unkept or sub.unkept:
            stats.subscribers_unmatched += 1  # a copy past the cap: not whole, not matched
            continue
        if mine is None:
            mine = _first_copy(run, channel_spans_run)
        times, digests, expected = mine
        got = Counter(sub.digests)
        gaps, duplicates = sum((expected - got).values()), sum((got - expected).values())
        stats.gaps += gaps
        stats.duplicates += duplicates
        if sub.digests != digests:
            if not (gaps or duplicates):
                # The same events in another order: a client applying them would differ.
                stats.reordered += sum(a != b for a, b in zip(sub.digests, digests, strict=True))
            broken = True
            continue
        for at_creator, at_sub in zip(times, sub.times, strict=True):
            if at_creator < sub.joined:
                stats.replayed += 1  # the join, not the fan-out: not a delivery lag
                continue
            stats.deliveries += 1
            if at_sub < at_creator:
                stats.subscriber_first += 1
                stats.delivery_lag.record(0.0)
            else:
                stats.delivery_lag.record(at_sub - at_creator)
    if broken and outcome == RUN_OK:
        stats.runs_broken += 1


def _first_copy(
    run: RunRecord, channel_spans_run: bool
) -> tuple[array[float], array[int], Counter[int]]:
    """The times and digests of the events a subscriber's copy holds (the first segment's
    where the channel carries no more), and their counts."""
    if channel_spans_run:
        times, digests = run.times, run.digests
    else:
        first = [i for i, s in enumerate(run.segments) if s == 0]
        times = array("d", (run.times[i] for i in first))
        digests = array("q", (run.digests[i] for i in first))
    return times, digests, Counter(digests)
