"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``.

``/healthz`` says only that the process answers (``{"status": "ok"}``): no credentials are needed,
so it tells nothing about runs, subscribers or the upstream. An orchestrator restarts a process
whose ``/healthz`` fails.

``/readyz`` says whether this node should be sent new work: 200 ``{"status": "ready"}``, or 503
``{"status": "unavailable", "reason": "...", "checks": {name: reason}}`` naming every failing
check. A load balancer takes a node out of rotation while it is unready; streams already open go
on. Checks are named callables in :class:`Readiness` (``app[READINESS]``): ``draining`` (after
SIGTERM), ``upstream`` (an :class:`UpstreamProbe`: the last TCP connect to the upstream's host
failed), ``broker`` in Redis mode (the live connection is reconnecting or the last append
failed) and whatever else a component adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from gateway.tasks import cancel_and_wait

__all__ = ["READINESS", "Check", "Readiness", "UpstreamProbe", "healthz", "readyz"]

Check = Callable[[], str | None]
"""None when fine, else why this node is not ready (short, no secrets, no addresses)."""

_encoder = msgspec.json.Encoder()
_NO_STORE = {"Cache-Control": "no-store"}
_OK = _encoder.encode({"status": "ok"})
_READY = _encoder.encode({"status": "ready"})


class Readiness:
    """The named checks ``/readyz`` runs, in the order added."""

    __slots__ = ("_checks",)

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} already added")
        self._checks[name] = check

    def discard(self, name: str) -> None:
        self._checks.pop(name, None)

    def failing(self) -> dict[str, str]:
        """The failing checks and their reasons (empty: ready)."""
        return {name: reason for name, check in self._checks.items() if (reason := check())}


READINESS = web.AppKey("runcast.readiness", Readiness)


class UpstreamProbe:
    """Opens (and at once closes) a TCP connection to the upstream's host every ``interval``
    seconds; :meth:`reason` tells whether the last attempt failed.

    A connect, not an HTTP request: it spends no rate limit and needs no key, and it is what
    fails when the upstream (or the route to it) is down. Until the first attempt has finished
    the upstream counts as unknown, so a node is not ready before it has reached it once.
    """

    def __init__(self, url: str, *, interval: float, timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._interval = interval
        self._timeout = timeout
        self._reason: str | None = "not reached yet"
        self._task: asyncio.Task[None] | None = None

    def reason(self) -> str | None:
        return self._reason

    async def __aenter__(self) -> UpstreamProbe:
        self._task = asyncio.create_task(self._run(), name="runcast-upstream-probe")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def probe(self) -> str | None:
        """One attempt now; its outcome becomes :meth:`reason`."""
        try:
            async with asyncio.timeout(self._timeout):
                _, writer = await asyncio.open_connection(self._host, self._port)
        except TimeoutError:
            self._reason = f"upstream unreachable: no connection within {self._timeout:g}s"
        except OSError as exc:
            # Not str(exc): it names the upstream's address, which /readyz does not disclose.
            cause = os.strerror(exc.errno) if exc.errno else "connection failed"
            self._reason = f"upstream unreachable: {cause}"
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._reason = None
        return self._reason

    async def _run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self._interval)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json", headers=_NO_STORE)


async def readyz(request: web.Request) -> web.Response:
    failing = request.app[READINESS].failing()
    if not failing:
        return web.Response(body=_READY, content_type="application/json", headers=_NO_STORE)
    body = {"status": "unavailable", "reason": "; ".join(failing.values()), "checks": failing}
    return web.Response(
        status=503, body=_encoder.encode(body), content_type="application/json", headers=_NO_STORE
    )
