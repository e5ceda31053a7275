"""The load test's results: a JSON-ready dict and a readable table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from .settings import LoadSettings
from .stats import LoadStats

__all__ = ["render_table", "to_dict", "write_json"]


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def to_dict(settings: LoadSettings, target: str, stats: LoadStats) -> dict[str, Any]:
    """Every figure of the run; the ``--json`` file holds exactly this."""
    elapsed = stats.elapsed
    events_total = stats.creator_events + stats.subscriber_events
    return {
        "target": target,
        "settings": {
            "embedded": settings.embedded,
            "runs": settings.run_limit,
            "duration": settings.duration,
            "concurrency": settings.concurrency,
            "subscribers_per_run": settings.subscribers_per_run,
            "subscriber_transport": settings.subscriber_transport,
            "scenario": settings.scenario,
            "rate": settings.rate,
        },
        "elapsed_s": round(elapsed, 3),
        "runs": {
            "started": stats.runs_started,
            "ok": stats.runs_ok,
            "failed": stats.runs_failed,
            "interrupted": stats.runs_interrupted,
            "failed_by_kind": dict(sorted(stats.failed.items())),
        },
        "runs_per_s": _rate(stats.runs_ok + stats.runs_failed, elapsed),
        "events": {
            "creator": stats.creator_events,
            "subscribers": stats.subscriber_events,
            "total": events_total,
            "per_s": _rate(events_total, elapsed),
        },
        "bytes": {"creator": stats.creator_bytes, "subscribers": stats.subscriber_bytes},
        "subscribers": {
            "complete": stats.subscribers_complete,
            "delivery_mismatches": stats.delivery_mismatches,
            "deliveries_ahead_of_creator": stats.subscriber_ahead,
        },
        "latency_ms": {
            "run_duration": stats.run_duration.summary_ms(),
            "ttfe": stats.ttfe.summary_ms(),
            "delivery_lag": stats.delivery_lag.summary_ms(),
        },
        "errors": dict(sorted(stats.errors.items())),
    }


def write_json(path: str, report: dict[str, Any]) -> None:
    Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:,.2f}"


def render_table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    events = report["events"]
    lines = [
        f"target      {report['target']}",
        f"runs        {runs['ok']:,} ok, {runs['failed']:,} failed, "
        f"{runs['interrupted']:,} interrupted in {report['elapsed_s']:.2f} s "
        f"({report['runs_per_s']:,.1f} runs/s)",
        f"events      {events['total']:,} ({events['creator']:,} creator + "
        f"{events['subscribers']:,} subscribers), {events['per_s']:,.0f} events/s",
        "",
        f"{'latency (ms)':<20}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}{'count':>10}",
    ]
    names = {"run_duration": "run duration", "ttfe": "first event", "delivery_lag": "delivery lag"}
    for key, label in names.items():
        row = report["latency_ms"][key]
        lines.append(
            f"{label:<20}{_ms(row['p50']):>10}{_ms(row['p95']):>10}{_ms(row['p99']):>10}"
            f"{_ms(row['max']):>10}{row['count']:>10,}"
        )
    ahead = report["subscribers"]["deliveries_ahead_of_creator"]
    lines.append(
        f"(delivery lag: from the first reader's receipt of an event to each subscriber's; "
        f"{ahead:,} deliveries beat the creator's copy)"
    )
    failures = runs["failed_by_kind"]
    errors = report["errors"]
    mismatches = report["subscribers"]["delivery_mismatches"]
    lines.append("")
    lines.append("failed runs " + (", ".join(f"{k}: {n:,}" for k, n in failures.items()) or "none"))
    problems = {**errors, **({"delivery_mismatches": mismatches} if mismatches else {})}
    lines.append("errors      " + (", ".join(f"{k}: {n:,}" for k, n in problems.items()) or "none"))
    return "\n".join(lines)
