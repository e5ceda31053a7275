"""The load test's configuration: one frozen, validated :class:`LoadSettings`."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.mock.settings import SCENARIO_NAMES

__all__ = ["DEFAULT_RUNS", "LoadSettings", "Transport"]

Transport = Literal["sse", "ws", "mixed"]

DEFAULT_RUNS = 100
"""Runs sent when neither ``runs`` nor ``duration`` is given."""


class LoadSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to send, where, and how hard. Times are seconds.

    ``target`` is the server's root URL (``/v1`` and ``/streams`` are appended); ``embedded``
    starts a gateway with its simulator in-process instead. ``runs`` and ``duration`` are
    exclusive; without either, :data:`DEFAULT_RUNS` runs. ``rate`` caps run starts per second
    across all virtual users (None: as fast as ``concurrency`` allows).
    """

    target: str | None = None
    embedded: bool = False
    api_key: str | None = None
    runs: int | None = None
    duration: float | None = None
    concurrency: int = 10
    subscribers_per_run: int = 2
    subscriber_transport: Transport = "sse"
    scenario: str = "text"
    rate: float | None = None
    json_path: str | None = None
    model: str = "gpt-4o"
    sim_deltas: int = 16
    """Deltas per message of the embedded simulator."""
    sim_delay_ms: float = 0.0
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    """Whole-request limit of the non-streamed calls (assistant, thread, token)."""
    idle_timeout: float = 30.0
    """Longest silence on a stream (creator or subscriber); streams get no total timeout."""
    run_timeout: float = 120.0
    """One run, from its thread's creation to the last subscriber's ``done``."""

    def __post_init__(self) -> None:
        if (self.target is None) == (not self.embedded):
            raise ConfigError("give exactly one of --target URL or --embedded")
        if self.target is not None and not self.target.startswith(("http://", "https://")):
            raise ConfigError(f"target must be an http(s) URL: {self.target!r}")
        if self.runs is not None and self.duration is not None:
            raise ConfigError("--runs and --duration are exclusive")
        if self.scenario not in SCENARIO_NAMES:
            raise ConfigError(f"unknown scenario {self.scenario!r}")
        if self.subscriber_transport not in ("sse", "ws", "mixed"):
            raise ConfigError("subscriber transport must be sse, ws or mixed")
        positive = {
            "runs": self.runs,
            "duration": self.duration,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "sim_deltas": self.sim_deltas,
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.request_timeout,
            "idle_timeout": self.idle_timeout,
            "run_timeout": self.run_timeout,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if self.subscribers_per_run < 0 or self.sim_delay_ms < 0:
            raise ConfigError("subscribers per run and sim delay must be >= 0")

    @property
    def run_limit(self) -> int | None:
        """How many runs to start (None: until ``duration`` is over)."""
        if self.duration is not None:
            return self.runs
        return self.runs if self.runs is not None else DEFAULT_RUNS

    @property
    def connections(self) -> int:
        """One connection per stream in flight: each run's creator and its subscribers."""
        return self.concurrency * (self.subscribers_per_run + 1)
