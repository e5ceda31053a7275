"""When a failed upstream call may be sent again, and how long to wait first.

Pure decisions, no I/O: :func:`retry_after` reads the server's wait hint, :class:`RetryPolicy`
classifies a failure as retryable or not and computes the delay. The policy itself (which
failures, which methods) is tabled in the docstring of ``gateway.upstream``; the rule behind it
is that a request which may have reached the upstream is never sent twice unless the method is
idempotent, because ``POST .../runs`` has no idempotency key and a duplicate would start a second
run or trip the one-active-run rule (spec §1.5, §5).
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from collections.abc import Mapping

from .settings import UpstreamSettings

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "retry_after"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods retried after failures that may have reached the upstream. DELETE is left out on
purpose: a repeated delete answers 404 and would hide the first attempt's success."""

_RATE_LIMIT_STATUSES = frozenset({429, 503})
"""Statuses by which the upstream says the request was *not* processed (spec §1.1, §1.5)."""

_IDEMPOTENT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses retried for idempotent methods even without a ``Retry-After`` hint."""


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asks to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``retry-after-ms`` (OpenAI's, spec §1.1) wins; ``Retry-After`` is either delta-seconds or an
    HTTP-date (RFC 9110 §10.2.3). Returns None when absent or unreadable; never negative.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms):
            return max(ms / 1000.0, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            # asctime and "-0000" dates carry no zone; every HTTP-date is UTC (RFC 9110 §5.6.7).
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class RetryPolicy:
    """Retry decisions for one :class:`~gateway.upstream.UpstreamClient`.

    ``attempt`` arguments count retries already made (0 before the first retry). Each method
    returns the delay before the next attempt, or None when the failure must be raised; the
    caller enforces the retry budget.
    """

    __slots__ = ("_base", "_cap", "_retry_after_max", "_rng")

    def __init__(self, settings: UpstreamSettings, *, rng: random.Random | None = None) -> None:
        self._base = settings.backoff_base
        self._cap = settings.backoff_max
        self._retry_after_max = settings.retry_after_max
        self._rng = rng if rng is not None else random.Random()

    def backoff(self, attempt: int) -> float:
        """Exponential delay for retry number ``attempt + 1``, capped, with up to 25% jitter down.

        Jitter spreads the retries of many runs that failed together (one upstream restart)."""
        delay = min(self._cap, self._base * (2.0**attempt))
        return delay * (1.0 - 0.25 * self._rng.random())

    def after_connect_error(self, attempt: int) -> float:
        """The connection could not be opened, so nothing was sent: any method may retry."""
        return self.backoff(attempt)

    def after_send_error(self, method: str, attempt: int) -> float | None:
        """The connection failed after the request may have been sent: idempotent methods only."""
        if method not in IDEMPOTENT_METHODS:
            return None
        return self.backoff(attempt)

    def after_status(
        self, method: str, status: int, headers: Mapping[str, str], attempt: int
    ) -> float | None:
        """Delay before retrying a non-2xx answer, or None to raise it.

        429/503 carrying a wait hint were refused unprocessed, so any method may retry after the
        hinted delay (when it is not longer than ``retry_after_max``). Idempotent methods also
        retry 408/429/5xx without a hint, on backoff. ``x-should-retry: false`` vetoes any retry.
        """
        if headers.get("x-should-retry", "").lower() == "false":
            return None
        hint = retry_after(headers) if status in _RATE_LIMIT_STATUSES else None
        if hint is not None:
            return hint if hint <= self._retry_after_max else None
        if method in IDEMPOTENT_METHODS and status in _IDEMPOTENT_RETRY_STATUSES:
            return self.backoff(attempt)
        return None
