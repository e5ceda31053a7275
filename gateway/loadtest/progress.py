"""What the load test shows while it runs: a live ``rich`` panel on a terminal, plain lines else.

The view only reads: a ``snapshot`` callable returns the stats measured so far (merged across
targets and processes), and each refresh shows runs, rates over the last interval, errors and
the current p99s. Without a terminal one line goes out every ``interval`` seconds, so CI logs
show the test moving without filling up with redraws.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .stats import LoadStats

__all__ = ["LIVE_REFRESH_S", "Progress"]

LIVE_REFRESH_S = 0.25


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


class Progress:
    """Shows ``snapshot()`` every so often on ``stream`` until cancelled."""

    def __init__(
        self,
        stream: TextIO,
        snapshot: Callable[[], LoadStats],
        *,
        live: bool,
        interval: float,
    ) -> None:
        self._stream = stream
        self._snapshot = snapshot
        self._live = live
        self._interval = interval
        self._started = time.perf_counter()
        self._last = (self._started, 0, 0)

    def _rates(self, stats: LoadStats) -> tuple[float, float]:
        now = time.perf_counter()
        finished = stats.runs_finished + stats.runs_cut
        events = stats.creator_events + stats.subscriber_events
        then, finished_then, events_then = self._last
        self._last = (now, finished, events)
        span = max(now - then, 1e-9)
        return (finished - finished_then) / span, (events - events_then) / span

    def line(self, stats: LoadStats) -> str:
        runs_s, events_s = self._rates(stats)
        errors = stats.runs_failed + sum(stats.errors.values()) + stats.bad_deliveries
        return (
            f"[{time.perf_counter() - self._started:7.1f}s] runs {stats.runs_started:,} started, "
            f"{stats.runs_ok:,} completed, {stats.runs_failed:,} failed | {runs_s:,.1f} runs/s, "
            f"{events_s:,.0f} events/s | p99 TTFT {_ms(stats.ttft.percentile(99))}, "
            f"delivery lag {_ms(stats.delivery_lag.percentile(99))} | errors {errors:,}"
        )

    def table(self, stats: LoadStats) -> Table:
        runs_s, events_s = self._rates(stats)
        table = Table(title="runcast loadtest", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        rows = {
            "elapsed": f"{time.perf_counter() - self._started:,.1f} s",
            "runs started": f"{stats.runs_started:,}",
            "completed / failed / cut": (
                f"{stats.runs_ok:,} / {stats.runs_failed:,} / {stats.runs_cut:,}"
            ),
            "runs/s": f"{runs_s:,.1f}",
            "events/s": f"{events_s:,.0f}",
            "errors": f"{stats.runs_failed + sum(stats.errors.values()):,}",
            "gaps / duplicates / reordered": (
                f"{stats.gaps:,} / {stats.duplicates:,} / {stats.reordered:,}"
            ),
            "p99 first event": _ms(stats.ttfe.percentile(99)),
            "p99 TTFT": _ms(stats.ttft.percentile(99)),
            "p99 between deltas": _ms(stats.inter_delta.percentile(99)),
            "p99 delivery lag": _ms(stats.delivery_lag.percentile(99)),
        }
        for name, value in rows.items():
            table.add_row(name, value)
        return table

    async def run(self) -> None:
        if self._live:
            console = Console(file=self._stream, force_terminal=True)
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while True:
                    live.update(self.table(self._snapshot()), refresh=True)
                    await asyncio.sleep(LIVE_REFRESH_S)
        if self._interval <= 0:
            return
        while True:
            await asyncio.sleep(self._interval)
            print(self.line(self._snapshot()), file=self._stream, flush=True)
