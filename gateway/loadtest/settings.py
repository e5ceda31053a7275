"""The load test's configuration: one frozen, validated :class:`LoadSettings`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from gateway.errors import ConfigError
from gateway.mock.settings import SCENARIO_NAMES

from .shape import Stage, parse_ramp, ramp_seconds

__all__ = ["DEFAULT_RUNS", "PROTOCOL_NAMES", "LoadSettings", "Transport", "server_root"]

Transport = Literal["sse", "ws", "mixed"]
Protocol = Literal["assistants", "responses", "chat"]
PROTOCOL_NAMES = ("assistants", "responses", "chat")

DEFAULT_RUNS = 100
"""Runs sent when neither ``runs`` nor ``duration`` (nor ``ramp``) is given."""

MAX_USERS = 100_000
"""Most virtual users (or runs in flight): each holds connections, and every user's task is
made at the start."""
MAX_SUBSCRIBERS = 1_000
MIN_RATE, MAX_RATE = 0.01, 1_000_000.0
"""Arrivals per second: below one per 100 s, the arrival clock (1 ms steps) would hold the loop
for minutes between two arrivals."""
MAX_SIM_DELAY_MS = 60_000.0


def server_root(url: str) -> str:
    """The server root of ``url``: a trailing ``/`` or ``/v1`` (``/v1/``) is dropped."""
    root = url.rstrip("/")
    return root.removesuffix("/v1") if root.endswith("/v1") else root


class LoadSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to send, where, and how hard. Times are seconds.

    ``target`` is the server's root URL (``/v1`` and ``/streams`` are appended; a target given
    with ``/v1`` is understood); ``embedded`` starts a gateway with its simulator in-process
    instead. ``runs`` bounds the runs started; ``duration`` (or the ``ramp``'s length) bounds the
    time, and runs still in flight at the deadline are cut, not failed. Without ``rate`` the load
    is a closed loop of ``concurrency`` virtual users; with it, an open loop of ``rate`` arrivals
    per second (``arrival`` constant or Poisson) with at most ``concurrency`` runs in flight.
    """

    target: str | None = None
    embedded: bool = False
    protocol: Protocol = "assistants"
    api_key: str | None = None
    runs: int | None = None
    duration: float | None = None
    concurrency: int = 10
    subscribers_per_run: int = 2
    subscriber_transport: Transport = "sse"
    scenario: str = "text"
    rate: float | None = None
    arrival: Literal["constant", "poisson"] = "constant"
    ramp: str | None = None
    """``LEVEL:SECONDS,...`` stages of users (closed loop) or of the rate (open loop)."""
    max_error_rate: float = 0.0
    """Highest error rate (0..1) that still exits 0."""
    compare: str | None = None
    """A second target receiving the same load in the same run."""
    processes: int = 1
    progress_interval: float = 5.0
    """Seconds between plain progress lines when not on a terminal (0: none)."""
    json_path: str | None = None
    plot_path: str | None = None
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
    give_up: float = 10.0
    """Stop the load once a target has refused every connection for this long (0: never)."""

    def __post_init__(self) -> None:
        if (self.target is None) == (not self.embedded):
            raise ConfigError("give exactly one of --target URL or --embedded")
        for flag, url in (("--target", self.target), ("--compare", self.compare)):
            if url is not None:
                _check_url(flag, url)
        if self.api_key is not None:
            _check_key(self.api_key)
        if self.runs is not None and self.duration is not None:
            raise ConfigError("--runs and --duration are exclusive")
        if self.scenario not in SCENARIO_NAMES:
            raise ConfigError(f"unknown scenario {self.scenario!r}")
        if self.protocol not in PROTOCOL_NAMES:
            raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOL_NAMES)}")
        if self.subscriber_transport not in ("sse", "ws", "mixed"):
            raise ConfigError("subscriber transport must be sse, ws or mixed")
        if self.arrival not in ("constant", "poisson"):
            raise ConfigError("--arrival must be constant or poisson")
        positive = {
            "runs": self.runs,
            "duration": self.duration,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "processes": self.processes,
            "sim_deltas": self.sim_deltas,
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.request_timeout,
            "idle_timeout": self.idle_timeout,
            "run_timeout": self.run_timeout,
        }
        for name, value in positive.items():
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value!r}")
        if self.subscribers_per_run < 0:
            raise ConfigError("--subscribers-per-run must be >= 0")
        if not self.sim_delay_ms >= 0:
            raise ConfigError("--sim-delay-ms must be >= 0")
        if not (self.give_up >= 0 and math.isfinite(self.give_up)):
            raise ConfigError("--give-up-after must be >= 0")
        if not self.progress_interval >= 0:
            raise ConfigError("--progress-interval must be >= 0")
        if not 0 <= self.max_error_rate <= 1:
            raise ConfigError("--max-error-rate must be between 0 and 1")
        if self.processes > self.concurrency:
            raise ConfigError("--processes cannot exceed --concurrency (each needs a user)")
        self._check_bounds()
        self._check_processes()
        if self.json_path is not None:
            _check_writable("--json", self.json_path)
        if self.plot_path is not None:
            if not self.plot_path.lower().endswith(".png"):
                raise ConfigError("--plot writes a PNG image: give a path ending in .png")
            _check_writable("--plot", self.plot_path)

    def _check_bounds(self) -> None:
        if self.concurrency > MAX_USERS:
            raise ConfigError(f"--concurrency must be at most {MAX_USERS:,}")
        if self.subscribers_per_run > MAX_SUBSCRIBERS:
            raise ConfigError(f"--subscribers-per-run must be at most {MAX_SUBSCRIBERS:,}")
        if self.rate is not None and not MIN_RATE <= self.rate <= MAX_RATE:
            raise ConfigError(f"--rate must be between {MIN_RATE:g} and {MAX_RATE:,.0f}")
        if not self.sim_delay_ms <= MAX_SIM_DELAY_MS:
            raise ConfigError(f"--sim-delay-ms must be between 0 and {MAX_SIM_DELAY_MS:,.0f}")
        if self.ramp is not None:
            top = max(stage.level for stage in parse_ramp(self.ramp))  # ConfigError naming --ramp
            if self.rate is None and top > MAX_USERS:
                raise ConfigError(f"--ramp: level {top:g} is over {MAX_USERS:,} users")
            if self.rate is not None and top > MAX_RATE:
                raise ConfigError(f"--ramp: level {top:g} is over {MAX_RATE:,.0f} arrivals/s")

    def _check_processes(self) -> None:
        """Each process's share (``workers.share``) must be a valid load of its own."""
        n = self.processes
        if n == 1:
            return
        limit = self.run_limit
        if limit is not None and n > limit:
            raise ConfigError(
                f"--processes {n} is more than the {limit:,} run(s) to start: one each"
            )
        if self.rate is not None and self.rate / n < MIN_RATE:
            raise ConfigError(
                f"--rate {self.rate:g} over --processes {n} is {self.rate / n:g} arrivals/s "
                f"each, under {MIN_RATE:g}: use fewer processes"
            )

    @property
    def root(self) -> str | None:
        return None if self.target is None else server_root(self.target)

    @property
    def stages(self) -> tuple[Stage, ...] | None:
        return None if self.ramp is None else parse_ramp(self.ramp)

    @property
    def time_limit(self) -> float | None:
        """Seconds the load lasts (None: until ``run_limit`` runs are done)."""
        if self.duration is not None:
            return self.duration
        stages = self.stages
        return None if stages is None else ramp_seconds(stages)

    @property
    def run_limit(self) -> int | None:
        """How many runs to start (None: until the time limit)."""
        if self.time_limit is not None:
            return self.runs
        return self.runs if self.runs is not None else DEFAULT_RUNS

    @property
    def connections(self) -> int:
        """One connection per stream in flight: each run's creator and its subscribers."""
        return self.concurrency * (self.subscribers_per_run + 1)


def _check_url(flag: str, url: str) -> None:
    """A server root runcast can send to: http(s), a host, no credentials, no query."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{flag} must be an http(s) URL: {url!r}")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # a port out of range raises
    except ValueError as exc:
        raise ConfigError(f"{flag} is not a valid URL ({exc}): {url!r}") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{flag} must not carry user:password@: give --api-key")
    if not host:
        raise ConfigError(f"{flag} must name a host: {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{flag} must be a server root (no ?query or #fragment): {url!r}")


def _check_writable(flag: str, path: str) -> None:
    """Refuse, before any load, a report path that could not be written at the end."""
    target = Path(path)
    if not path:
        raise ConfigError(f"{flag}: cannot write '': give a file path")
    if target.is_dir():
        raise ConfigError(f"{flag}: {path} is a directory")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: cannot write {path} (no writable folder {str(folder)!r})")


def _check_key(key: str) -> None:
    """The key goes into an ``Authorization: Bearer`` header: a bearer token is visible ASCII
    (RFC 6750 §2.1), and a control character would be refused by the HTTP client at each run,
    or split the header. The key itself is not shown (it is a secret)."""
    for at, char in enumerate(key, 1):
        if not "!" <= char <= "~":
            raise ConfigError(
                f"--api-key holds {'a space' if char == ' ' else repr(char)} at character "
                f"{at}: a bearer key is visible ASCII only (RFC 6750 §2.1)"
            )
