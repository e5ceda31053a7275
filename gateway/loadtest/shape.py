"""Load shapes, pure: ``--ramp`` stages and the gaps between open-loop (``--rate``) arrivals.

A ramp is k6's ``stages``: ``LEVEL:SECONDS`` pairs, each moving the level linearly from where the
previous stage ended (0 before the first) to ``LEVEL`` over ``SECONDS``; ``LEVEL:SECONDS`` with
the same level as before holds it. The level is the number of virtual users (closed loop) or the
arrival rate in runs per second (open loop). After the last stage the level stays where it ended.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from gateway.errors import ConfigError

__all__ = ["Stage", "level_at", "next_gap", "parse_ramp", "ramp_seconds"]

IDLE_RECHECK_S = 0.05
"""How long an open loop waits before looking again while the ramped rate is 0."""


class Stage(NamedTuple):
    level: float
    seconds: float


def parse_ramp(text: str) -> tuple[Stage, ...]:
    """``"10:5,50:10,50:30"`` -> stages; ConfigError naming ``--ramp`` on anything else."""
    stages: list[Stage] = []
    for part in text.split(","):
        level, sep, seconds = part.strip().partition(":")
        try:
            stage = Stage(float(level), float(seconds.removesuffix("s")))
        except ValueError:
            stage = Stage(-1.0, -1.0)
        if not sep or not (math.isfinite(stage.level) and math.isfinite(stage.seconds)):
            stage = Stage(-1.0, -1.0)
        if stage.level < 0 or stage.seconds <= 0:
            raise ConfigError(
                f"--ramp: {part.strip()!r} is not LEVEL:SECONDS (level >= 0, seconds > 0)"
            )
        stages.append(stage)
    return tuple(stages)


def ramp_seconds(stages: tuple[Stage, ...]) -> float:
    return sum(stage.seconds for stage in stages)


def level_at(stages: tuple[Stage, ...], t: float) -> float:
    """The level ``t`` seconds into the ramp."""
    start = 0.0
    for stage in stages:
        if t < stage.seconds:
            return start + (stage.level - start) * max(t, 0.0) / stage.seconds
        t -= stage.seconds
        start = stage.level
    return start


def next_gap(rate: float, *, poisson: bool, rng: random.Random) -> float:
    """Seconds to the next arrival at ``rate`` per second (exponential gaps when Poisson)."""
    if rate <= 0:
        return IDLE_RECHECK_S
    return rng.expovariate(rate) if poisson else 1.0 / rate
