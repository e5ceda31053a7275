"""Load shapes, pure: ``--ramp`` stages and the times of open-loop (``--rate``) arrivals.

A ramp is k6's ``stages``: ``LEVEL:SECONDS`` pairs, each moving the level linearly from where the
previous stage ended (0 before the first) to ``LEVEL`` over ``SECONDS``; ``LEVEL:SECONDS`` with
the same level as before holds it. The level is the number of virtual users (closed loop) or the
arrival rate in runs per second (open loop). After the last stage the level stays where it ended.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import NamedTuple

from gateway.errors import ConfigError

__all__ = ["Stage", "arrivals", "level_at", "parse_ramp", "ramp_seconds"]

STEP_S = 0.001
"""Slices over which a ramped rate is taken as constant."""


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


def arrivals(
    rate_at: Callable[[float], float],
    *,
    poisson: bool,
    rng: random.Random,
    horizon: float = math.inf,
) -> Iterator[float]:
    """Offsets (seconds) of open-loop arrivals for a rate that may change over time.

    An arrival happens each time the integral of the rate grows by 1 (constant) or by an Exp(1)
    draw (Poisson), so a ramping rate is followed closely instead of the gap drawn at a low
    rate overshooting the ramp. The rate is taken as constant over ``STEP_S`` slices; at a
    constant rate the gaps are exact. Stops at ``horizon``.
    """
    t = 0.0
    credit = 0.0
    need = rng.expovariate(1.0) if poisson else 1.0
    while t < horizon:
        rate = rate_at(t)
        if rate > 0 and (need - credit) / rate <= STEP_S:
            t += (need - credit) / rate
            if t >= horizon:
                return
            yield t
            credit = 0.0
            need = rng.expovariate(1.0) if poisson else 1.0
        else:
            credit += max(rate, 0.0) * STEP_S
            t += STEP_S
