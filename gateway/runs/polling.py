"""Reads of the upstream that outlast an outage, until a deadline: :class:`Poller`.

Recovery (``assistants/recovery.py``) must learn how a run ended even when the upstream is unreachable for a
while, so one :class:`Poller` holds the deadline of one recovery (``--recovery-timeout`` from the
moment the stream broke) and every GET of it goes through :meth:`Poller.get`:

- each attempt is a single request (no retry inside the client), bounded by ``ATTEMPT_TIMEOUT``
  and by the deadline;
- a transient failure (connection refused or reset, a timeout, 408/409/425/429, any 5xx) is tried
  again after a capped exponential backoff with jitter (``BACKOFF_BASE`` doubling up to
  ``BACKOFF_MAX``; a ``Retry-After`` hint instead, when the upstream gives one), until the
  deadline;
- a definitive answer ends the recovery at once: any other 4xx (404: the upstream does not know the
  run, 401/403: the key is refused) or a body that cannot be read as asked (too large).

Every answer that arrives resets the backoff, so a run polled at the upstream's own pace after an
outage is not slowed by the failures before it.
"""

from __future__ import annotations

import asyncio
import logging
import random

from multidict import CIMultiDictProxy

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.upstream import UpstreamClient
from gateway.upstream.body import Query
from gateway.upstream.retry import retry_after
from parsers.errors import RemoteProtocolError

__all__ = ["ATTEMPT_TIMEOUT", "BACKOFF_BASE", "BACKOFF_MAX", "Poller", "transient_status"]

log = logging.getLogger("runcast.relay")

ATTEMPT_TIMEOUT = 10.0
"""Longest one GET may take, head and body (the openai SDK's connect timeout is 5 s; a Run is a
few KiB)."""
BACKOFF_BASE = 0.2
"""First wait after a failure, in seconds; doubled per consecutive failure."""
BACKOFF_MAX = 2.0
"""Cap of one wait: a run is recovered at most this long after its upstream is back."""

_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
"""Statuses by which the upstream says "not now" (timeout, conflict, too early, rate limit)."""


def transient_status(status: int) -> bool:
    """Whether a non-2xx status may answer differently later."""
    return status >= 500 or status in _TRANSIENT_4XX


class Poller:
    """GETs against one upstream until ``within`` seconds from now (module docstring)."""

    __slots__ = ("_api_key", "_deadline", "_failures", "_loop", "_rng", "_upstream", "what")

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        within: float,
        api_key: str | None = None,
        what: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self._upstream = upstream
        self._api_key = api_key
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + within
        self._failures = 0
        self._rng = rng if rng is not None else random.Random()
        self.what = what
        """Named in the log lines (``run <id>``)."""

    def remaining(self) -> float:
        return self._deadline - self._loop.time()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (no further than the deadline); False once the deadline has passed."""
        await asyncio.sleep(max(0.0, min(seconds, self.remaining())))
        return self.remaining() > 0

    async def get(
        self, path: str, *, query: Query = None, limit: int
    ) -> tuple[bytes, CIMultiDictProxy[str]] | None:
        """The body (at most ``limit`` bytes) and headers of a 2xx answer to ``GET path``; None
        when the answer is definitive or the deadline passes first (logged)."""
        while True:
            remaining = self.remaining()
            if remaining <= 0:
                log.warning("%s: upstream still failing at the recovery deadline", self.what)
                return None
            hint: float | None = None
            try:
                async with asyncio.timeout(min(ATTEMPT_TIMEOUT, remaining)):
                    async with self._upstream.request(
                        "GET", path, query=query, api_key=self._api_key, max_retries=0
                    ) as response:
                        if response.ok:
                            body = await response.read(limit=limit)
                            self._failures = 0
                            return body, response.headers
                        status = response.status
                        if not transient_status(status):
                            log.warning("%s: %s answered HTTP %d", self.what, path, status)
                            return None
                        hint = retry_after(response.headers)
                        failure = f"HTTP {status}"
            except RemoteProtocolError as exc:
                log.warning("%s: %s unreadable: %s", self.what, path, exc)
                return None
            except UpstreamHTTPError as exc:  # pragma: no cover - request() returns every status
                log.warning("%s: %s refused: %s", self.what, path, exc)
                return None
            except (UpstreamError, TimeoutError) as exc:
                failure = str(exc) or "attempt timeout"
            log.debug("%s: %s failed (%s); trying again", self.what, path, failure)
            if not await self.sleep(hint if hint is not None else self._backoff()):
                log.warning(
                    "%s: upstream still failing at the recovery deadline (%s)", self.what, failure
                )
                return None

    def _backoff(self) -> float:
        delay = min(BACKOFF_MAX, BACKOFF_BASE * (2.0**self._failures))
        self._failures += 1
        # Jitter spreads the polls of the many runs that one upstream restart broke at once.
        return delay * (0.5 + 0.5 * self._rng.random())
