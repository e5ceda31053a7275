"""The load test's results: the JSON-ready report (``report.schema.json``), its table and verdict.

The report holds the configuration, the environment, one result per target (the target, then
``--compare``'s), the added latency of the first over the second (paired run by run and event by
event: ``loops.py``), the generator's own CPU use
and the verdict that decides the exit status.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from .settings import LoadSettings
from .stats import MAX_KEPT_EVENTS, PERCENTILES, LoadStats

__all__ = ["SATURATED_CPU", "render_table", "to_dict", "verdict", "write_json"]

SCHEMA_ID = "runcast-loadtest-report/1"
SATURATED_CPU = 0.9
"""CPU time over wall time of one generator process (one core) past which it is the bottleneck."""


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _config(settings: LoadSettings) -> dict[str, Any]:
    config = msgspec.structs.asdict(settings)
    config.pop("api_key")
    config["run_limit"] = settings.run_limit
    config["time_limit"] = settings.time_limit
    return config


def environment(*, event_loop: str, started: float) -> dict[str, Any]:
    try:
        version = metadata.version("runcast")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "runcast": version,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": event_loop,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
    }


def result(url: str, stats: LoadStats) -> dict[str, Any]:
    """The figures measured against one target."""
    elapsed = stats.elapsed
    events_total = stats.creator_events + stats.subscriber_events
    errors = {**stats.failed, **stats.errors}
    if stats.gaps:
        errors["gaps"] = stats.gaps
    if stats.duplicates:
        errors["duplicates"] = stats.duplicates
    if stats.reordered:
        errors["reordered"] = stats.reordered
    return {
        "target": url,
        "elapsed_s": round(elapsed, 3),
        "runs": {
            "started": stats.runs_started,
            "completed": stats.runs_ok,
            "failed": stats.runs_failed,
            "cut": stats.runs_cut,
            "dropped_arrivals": stats.arrivals_dropped,
            "outcomes": dict(sorted(stats.outcomes.items())),
        },
        "runs_per_s": _rate(stats.runs_finished, elapsed),
        "error_rate": round(stats.error_rate(), 6),
        "events": {
            "creator": stats.creator_events,
            "subscribers": stats.subscriber_events,
            "total": events_total,
            "per_s": _rate(events_total, elapsed),
            "unkept": stats.events_unkept,
        },
        "bytes": {"creator": stats.creator_bytes, "subscribers": stats.subscriber_bytes},
        "output": {
            "chars": stats.output_chars,
            "chars_per_s_per_run": stats.chars_per_s.summary(1.0),
        },
        "subscribers": {
            "complete": stats.subscribers_complete,
            "cut": stats.subscribers_cut,
            "gaps": stats.gaps,
            "duplicates": stats.duplicates,
            "reordered": stats.reordered,
            "unmatched": stats.subscribers_unmatched,
            "deliveries": stats.deliveries,
            "subscriber_first": stats.subscriber_first,
            "replayed": stats.replayed,
        },
        "latency_ms": {
            "run_duration": stats.run_duration.summary_ms(),
            "ttfe": stats.ttfe.summary_ms(),
            "ttft": stats.ttft.summary_ms(),
            "inter_delta": stats.inter_delta.summary_ms(),
            "delivery_lag": stats.delivery_lag.summary_ms(),
            "event": stats.event_latency.summary_ms(),
        },
        "errors": dict(sorted(errors.items())),
        "error_details": dict(sorted(stats.error_details.items())),
        "timeline": stats.timeline.to_list(int(elapsed) + 1),
    }


def _added(stats: LoadStats) -> dict[str, float | None]:
    """The paired added latency (``loops.py``), per event and for the first event, in ms."""
    added: dict[str, float | None] = {}
    for row, histogram in (("event", stats.added_event), ("ttfe", stats.added_ttfe)):
        for key, p in PERCENTILES:
            if key in ("p50", "p99"):
                value = histogram.percentile(p)
                added[f"{row}_{key}"] = None if value is None else round(value * 1000, 3)
    added["pairs"] = stats.added_ttfe.count
    return added


def verdict(settings: LoadSettings, stats: list[LoadStats]) -> dict[str, Any]:
    """Whether the run passes: error rate within ``--max-error-rate``, no gap, no duplicate, no
    event out of order, no target given up as unreachable, and some run finished on each target
    (none started: nothing was measured either)."""
    rate = max(s.error_rate() for s in stats)
    bad = sum(s.bad_deliveries for s in stats)
    reasons = []
    if rate > settings.max_error_rate:
        reasons.append(f"error rate {rate:.2%} > --max-error-rate {settings.max_error_rate:.2%}")
    if bad:
        reasons.append(f"{bad:,} gaps, duplicates or reordered events in subscribers' copies")
    reasons += [s.gave_up for s in stats if s.gave_up]
    if not all(s.runs_started for s in stats):
        reasons.append("no run started: the load ended before its first run, nothing was measured")
    for s in stats:
        if s.runs_started and not s.runs_finished and not s.gave_up:
            # Cut runs are no failures, but a load that finished none measured nothing: a
            # target that never answers must not pass the gate.
            reasons.append(
                f"no run finished: {s.runs_started:,} started, all cut by the deadline or a stop"
            )
    return {"passed": not reasons, "reasons": reasons}


def to_dict(
    settings: LoadSettings, urls: list[str], stats: list[LoadStats], env: dict[str, Any]
) -> dict[str, Any]:
    """Every figure of the run; the ``--json`` file holds exactly this."""
    results = [result(url, s) for url, s in zip(urls, stats, strict=True)]
    first = stats[0]
    cpu_fraction = first.max_cpu_fraction
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "config": _config(settings),
        "environment": env,
        **results[0],
        "compare": None,
        "generator": {
            "processes": settings.processes,
            "cpu_s": round(first.cpu_s, 3),
            "busiest_process_cpu": round(cpu_fraction, 3),
            # Below a second, start-up work dominates the ratio.
            "saturated": cpu_fraction >= SATURATED_CPU and first.elapsed >= 1.0,
            "loop_lag_ms": first.loop_lag.summary_ms(),
        },
        "verdict": verdict(settings, stats),
    }
    if len(results) > 1:
        report["compare"] = {**results[1], "added_latency_ms": _added(first)}
    return report


def write_json(path: str, report: dict[str, Any]) -> None:
    Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _in_ms(value: object) -> str:
    """``value`` with its unit, or a bare dash when it was not measured."""
    return "-" if value is None else f"{value:,.2f} ms"


_ROWS = {
    "run_duration": "run duration",
    "ttfe": "first event",
    "ttft": "first text (TTFT)",
    "inter_delta": "between deltas",
    "delivery_lag": "delivery lag",
}


def _latency_table(result: dict[str, Any]) -> list[str]:
    heads = [key.replace("_", ".") for key, _ in PERCENTILES]
    lines = [f"{'latency (ms)':<20}" + "".join(f"{h:>10}" for h in [*heads, "max", "count"])]
    for key, label in _ROWS.items():
        row = result["latency_ms"][key]
        cells = [_ms(row[k]) for k, _ in PERCENTILES] + [_ms(row["max"]), f"{row['count']:,}"]
        lines.append(f"{label:<20}" + "".join(f"{c:>10}" for c in cells))
    return lines


def _target_lines(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    events = result["events"]
    subs = result["subscribers"]
    lines = [
        f"target      {result['target']}",
        f"runs        {runs['completed']:,} completed, {runs['failed']:,} failed, "
        f"{runs['cut']:,} cut by the deadline or stop, in {result['elapsed_s']:.2f} s "
        f"({result['runs_per_s']:,.1f} runs/s)",
    ]
    if runs["dropped_arrivals"]:
        lines.append(
            f"            {runs['dropped_arrivals']:,} arrivals dropped: --concurrency runs "
            "were already in flight (the target or the generator cannot keep up)"
        )
    lines += [
        f"events      {events['total']:,} ({events['creator']:,} creator + "
        f"{events['subscribers']:,} subscribers), {events['per_s']:,.0f} events/s",
        f"output      {result['output']['chars']:,} characters of text",
        "",
        *_latency_table(result),
    ]
    if subs["deliveries"]:
        first = subs["subscriber_first"]
        lines.append(
            f"(delivery lag: a subscriber's copy of an event after the creator's; "
            f"{first:,} of {subs['deliveries']:,} deliveries ({first / subs['deliveries']:.0%}) "
            "reached a subscriber first and count as 0)"
        )
    if subs["replayed"]:
        lines.append(
            f"({subs['replayed']:,} events reached subscribers from the channel's replay, "
            "before they joined: matched, not timed)"
        )
    if events["unkept"] or subs["unmatched"]:
        lines.append(
            f"({events['unkept']:,} creator events past the {MAX_KEPT_EVENTS:,} kept per run were "
            f"counted, not timed or matched; {subs['unmatched']:,} subscribers' copies not matched)"
        )
    lines.append(
        f"subscribers {subs['complete']:,} complete, {subs['cut']:,} cut, "
        f"{subs['gaps']:,} gaps, {subs['duplicates']:,} duplicates, {subs['reordered']:,} reordered"
    )
    lines.append(
        "errors      " + (", ".join(f"{k}: {n:,}" for k, n in result["errors"].items()) or "none")
    )
    lines += [f"            {k}: {text}" for k, text in result["error_details"].items()]
    return lines


def render_table(report: dict[str, Any]) -> str:
    lines = _target_lines(report)
    compare = report["compare"]
    if compare is not None:
        lines += ["", "compared with", *_target_lines(compare), ""]
        added = compare["added_latency_ms"]
        lines.append(
            f"added latency per event: p50 {_in_ms(added['event_p50'])}, "
            f"p99 {_in_ms(added['event_p99'])} (first event: p50 {_in_ms(added['ttfe_p50'])}, "
            f"p99 {_in_ms(added['ttfe_p99'])}) of {report['target']} over {compare['target']}, "
            f"from {added['pairs']:,} pairs of runs started together"
        )
    gen = report["generator"]
    lines.append("")
    lines.append(
        f"generator   {gen['processes']} process(es), busiest at {gen['busiest_process_cpu']:.0%} "
        f"of a core, event loop lag p99 {_in_ms(gen['loop_lag_ms']['p99'])}"
    )
    if gen["saturated"]:
        lines.append(
            "WARNING     the load generator is saturated (one core busy): its own queueing is in "
            "the figures; spread it with --processes N"
            + (
                " (--embedded: the gateway and simulator share its process)"
                if report["config"]["embedded"]
                else ""
            )
        )
    verdict = report["verdict"]
    lines.append(
        "verdict     " + ("passed" if verdict["passed"] else "; ".join(verdict["reasons"]))
    )
    return "\n".join(lines)
