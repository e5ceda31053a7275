"""``runcast serve --workers N``: N gateway processes on one port, supervised by this one.

Each worker is ``runcast serve`` again with the same arguments, its own ``--node-id``,
:data:`WORKER_ENV` set to its index (so it serves instead of supervising) and a listening
socket bound with ``SO_REUSEPORT``, so the kernel spreads connections over them; they share
runs, channels and tool state through the Redis broker (Redis mode is required, see
:class:`~gateway.settings.Settings`). The supervisor owns their processes: it starts them,
forwards SIGINT/SIGTERM (each worker drains as a single process would), from before the first
worker starts (a signal while they start stops those started), and starts again, in its place,
a worker that exits on its own. It owns nothing of what the workers serve.

A worker that exits on its own (a crash, SIGKILL, the OOM killer) is started again with the same
index after a backoff (:func:`next_delay`); the others go on serving, untouched. Each incarnation
is a node of its own (:func:`worker_node_id`: ``<node>-<i>``, then ``<node>-<i>r1``, ...): the
runs the dead one pumped are taken over through their leases by any node, the new incarnation
included, as from any dead node, and none of its node-scoped keys (its action expiry schedule,
its upstream record) is inherited by a process that never held them. The set stops instead
(SIGTERM to the others, as for a signal) with status 1 when :data:`CRASH_LIMIT` deaths fall
within :data:`CRASH_WINDOW` (a crash loop: the service manager's turn), and with status 2 at the
first worker that refused the configuration (a restart would not help).

Workers outlive nothing: each gets SIGTERM (and drains) when the supervisor dies, however it
dies (Linux's parent-death signal), so no orphan keeps a share of the port. A signalled worker
has its drain and shutdown timeouts, and some slack, to exit before it is killed.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from types import FrameType

__all__ = ["WORKER_ENV", "generated_node_id", "next_delay", "supervise", "worker_node_id"]

WORKER_ENV = "RUNCAST_WORKER_INDEX"
"""Set in each worker's environment: the worker's index (0..N-1)."""

log = logging.getLogger("runcast")

POLL = 0.2
"""Seconds between looks at the workers (the supervisor runs no event loop)."""

STOP_SLACK = 10.0
"""Seconds a signalled worker is given past its drain and shutdown timeouts before it is
killed."""

FIRST_DELAY = 0.1
"""Seconds before a dead worker is started again; doubled at each death of the same index."""
MAX_DELAY = 5.0
"""The bound on that delay."""
STEADY_AFTER = 30.0
"""Seconds an incarnation must have lived for its death to start the delay again from
:data:`FIRST_DELAY` (gunicorn and uvicorn restart at once; the delay spares a worker that dies
at start a tight loop)."""

CRASH_LIMIT = 5
"""Deaths of workers, any of them, within :data:`CRASH_WINDOW` that stop the set (status 1);
one per worker when there are more (an OOM kill that takes several at once is no loop)."""
CRASH_WINDOW = 60.0

_PR_SET_PDEATHSIG = 1


def generated_node_id() -> str:
    """A node name unique across restarts: the host name and a random suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def worker_node_id(node_id: str, index: int, restarts: int) -> str:
    """The node name of worker ``index``'s incarnation after ``restarts`` restarts."""
    return f"{node_id}-{index}" + (f"r{restarts}" if restarts else "")


def next_delay(previous: float | None, lived: float) -> float:
    """The delay before a worker that lived ``lived`` seconds starts again, ``previous`` being
    the delay before its own start (None: it was started with the set)."""
    if previous is None or lived >= STEADY_AFTER:
        return FIRST_DELAY
    return min(MAX_DELAY, previous * 2)


def supervise(argv: Sequence[str], *, count: int, node_id: str, stop_timeout: float) -> int:
    """Run ``count`` workers of ``runcast <argv>``, each started again when it dies, until a
    signal (0), a crash loop (1), or a worker that refused the configuration (2); a signalled
    worker that has not exited within ``stop_timeout`` seconds is killed."""
    workers: dict[int, subprocess.Popen[bytes]] = {}
    stopping: list[int] = []
    supervisor = os.getpid()

    told: dict[int, int] = {}  # pid -> the stop signal forwarded to it first

    def tell(child: subprocess.Popen[bytes], signum: int) -> None:
        child.send_signal(signum)
        told.setdefault(child.pid, signum)

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in workers.values():
            if child.poll() is None:
                tell(child, signum)

    restarts = [0] * count
    started = [0.0] * count
    delays: list[float | None] = [None] * count
    due: dict[int, float] = {}  # index -> when the dead worker of that index starts again
    deaths: collections.deque[float] = collections.deque()
    crash_limit = max(CRASH_LIMIT, count)

    def start(i: int) -> None:
        node = worker_node_id(node_id, i, restarts[i])
        child = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *argv, "--node-id", node],
            env={**os.environ, WORKER_ENV: str(i)},
            preexec_fn=functools.partial(_die_with, supervisor),
        )
        workers[i] = child
        started[i] = time.monotonic()
        if stopping:
            # The signal came during Popen, before ``forward`` could see the child; a worker
            # counts a second copy within a second as the same signal (http/runner.py).
            tell(child, stopping[-1])

    def died(i: int, child: subprocess.Popen[bytes], now: float) -> int | None:
        """Log the death of worker ``i``; schedule its restart, or the set's status."""
        del workers[i]
        code = child.returncode
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        if code == 2:
            log.error(
                "worker %d (pid %d) %s: it refused the configuration, stopping the others",
                *(i, child.pid, how),
            )
            return 2
        deaths.append(now)
        while deaths[0] <= now - CRASH_WINDOW:
            deaths.popleft()
        if len(deaths) >= crash_limit:
            log.error("worker %d (pid %d) %s", i, child.pid, how)
            return 1
        delay = delays[i] = next_delay(delays[i], now - started[i])
        restarts[i] += 1
        due[i] = now + delay
        node = worker_node_id(node_id, i, restarts[i])
        log.error(
            "worker %d (pid %d) %s: starting it again in %gs as node %s",
            *(i, child.pid, how, delay, node),
        )
        return None

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(count):
            if stopping:
                break  # a signal while they start: those started have had it
            start(i)
        if not stopping:
            log.info("started %d workers (nodes %s-0..%d)", count, node_id, count - 1)
        status: int | None = None
        while not stopping and status is None:
            now = time.monotonic()
            for i, child in list(workers.items()):
                if child.poll() is not None:
                    status = died(i, child, now)
                    if status is not None:
                        break
            if status is not None:
                break
            for i, at in list(due.items()):
                if at <= now and not stopping:
                    del due[i]
                    start(i)
            time.sleep(min([POLL, *(max(0.0, at - now) for at in due.values())]))
        signalled = bool(stopping)
        if not signalled:
            if status == 1:
                log.error(
                    "%d worker deaths within %gs: giving up, stopping the others",
                    *(crash_limit, CRASH_WINDOW),
                )
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + stop_timeout
        for i, child in workers.items():
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %gs: killed", i, stop_timeout)
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signalled:
        return _stopped_status(workers, told)
    assert status is not None
    return status


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stopped_status(workers: dict[int, subprocess.Popen[bytes]], told: dict[int, int]) -> int:
    """The set's status after a stop signal: 0 when every worker it reached drained (0) or, still
    starting, was ended by it before it could drain (nothing to drain then); a worker that had
    died on its own just before is logged, not counted (it would have been started again)."""
    status = 0
    for i, child in workers.items():
        code = child.returncode
        signum = told.get(child.pid)
        if signum is None:
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with {code}"
            log.error("worker %d (pid %d) %s before the stop reached it", i, child.pid, how)
        elif code == -signum:
            log.info(
                "worker %d (pid %d) was still starting: the stop signal ended it", i, child.pid
            )
        elif code != 0:
            status = 1
    return status


def _die_with(supervisor: int) -> None:
    """In a worker, before it runs: SIGTERM when its parent dies (Linux; elsewhere nothing); if
    the supervisor is already gone (it died while this one started), the worker never runs."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:
        os._exit(1)
