"""``--plot PATH.png``: latency CDFs, throughput and errors over time, in one PNG (matplotlib).

matplotlib is the optional extra ``runcast[plot]``; it is imported only here, with the Agg
backend and a bare :class:`~matplotlib.figure.Figure` (no pyplot global state). The CDFs come
from the histograms themselves, so they hold every sample, not only the percentiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

from .stats import LoadStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PANEL_TITLES", "build_figure", "require_matplotlib", "save_plot"]

PANEL_TITLES = ("Latency CDF", "Throughput over time", "Errors over time")
_CDF_ROWS = {
    "ttfe": "first event",
    "ttft": "first text (TTFT)",
    "inter_delta": "between deltas",
    "delivery_lag": "delivery lag",
    "run_duration": "run duration",
}


def require_matplotlib() -> None:
    """ConfigError naming the extra when matplotlib is missing (checked before the load)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'runcast[plot]'") from None


def build_figure(report: dict[str, Any], stats: LoadStats) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2), dpi=100, layout="constrained")
    cdf, throughput, errors = fig.subplots(1, 3)
    drawn = False
    for key, label in _CDF_ROWS.items():
        points = getattr(stats, key).cdf()
        if points:
            values, fractions = zip(*points, strict=True)
            # A log axis has no 0: zero lags (subscriber first) show at the histogram's floor.
            floor = getattr(stats, key).lowest
            shown = [max(v, floor) * 1000 for v in values]
            cdf.step(shown, fractions, where="post", label=label)
            drawn = True
    cdf.set_xscale("log")
    cdf.set_xlabel("ms (log)")
    cdf.set_ylabel("fraction of samples")
    cdf.set_ylim(0, 1.01)
    cdf.grid(True, which="both", alpha=0.3)
    if drawn:  # no completed run, no sample: a legend of nothing is a matplotlib warning
        cdf.legend(fontsize="small", loc="lower right")

    timeline = report["timeline"]
    seconds = [row["t"] for row in timeline]
    throughput.plot(seconds, [row["completed"] for row in timeline], label="runs completed/s")
    throughput.plot(seconds, [row["started"] for row in timeline], label="runs started/s")
    throughput.set_xlabel("second")
    throughput.set_ylabel("runs per second")
    events = throughput.twinx()
    events.plot(
        seconds, [row["events"] for row in timeline], color="tab:gray", alpha=0.5, label="events/s"
    )
    events.set_ylabel("creator events per second")
    lines = throughput.get_lines() + events.get_lines()
    throughput.legend(
        lines, [line.get_label() for line in lines], fontsize="small", loc="upper left"
    )
    throughput.grid(True, alpha=0.3)

    errors.bar(seconds, [row["failed"] for row in timeline], label="failed runs", color="tab:red")
    errors.bar(
        seconds,
        [row["subscriber_errors"] for row in timeline],
        bottom=[row["failed"] for row in timeline],
        label="subscriber errors",
        color="tab:orange",
    )
    errors.plot(seconds, [row["cut"] for row in timeline], "k.", label="cut by the deadline")
    errors.set_xlabel("second")
    errors.set_ylabel("per second")
    errors.legend(fontsize="small", loc="upper left")
    errors.grid(True, alpha=0.3)

    for axes, title in zip((cdf, throughput, errors), PANEL_TITLES, strict=True):
        axes.set_title(title)
    fig.suptitle(f"runcast loadtest: {report['target']} ({report['config']['protocol']})")
    return fig


def save_plot(path: str, report: dict[str, Any], stats: LoadStats) -> None:
    build_figure(report, stats).savefig(path, format="png")
