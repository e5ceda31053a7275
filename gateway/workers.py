"""``runcast serve --workers N``: N gateway processes on one port, supervised by this one.

Each worker is ``runcast serve`` again with the same arguments, its own ``--node-id``
(``<node>-<i>``), :data:`WORKER_ENV` set to its index (so it serves instead of supervising)
and a listening socket bound with ``SO_REUSEPORT``, so the kernel spreads
connections over them; they share runs, channels and tool state through the Redis broker
(Redis mode is required, see :class:`~gateway.settings.Settings`). The supervisor only starts
them and forwards SIGINT/SIGTERM (each worker drains as a single process would), from before
the first worker starts: a signal while they start stops those started. A worker that exits
on its own stops the others, and the supervisor exits with status 1 so that the service
manager restarts the set (2 when the worker found the configuration wrong: a restart would not
help); what the dead worker owned is taken over by other nodes. Workers outlive nothing: each
gets SIGTERM (and drains) when the supervisor dies, however it dies (Linux's parent-death
signal), so no orphan keeps a share of the port. A signalled worker has its drain and shutdown
timeouts, and some slack, to exit before it is killed.
"""

from __future__ import annotations

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

__all__ = ["WORKER_ENV", "generated_node_id", "supervise"]

WORKER_ENV = "RUNCAST_WORKER_INDEX"
"""Set in each worker's environment: the worker's index (0..N-1)."""

log = logging.getLogger("runcast")

POLL = 0.2
"""Seconds between looks at the workers (the supervisor runs no event loop)."""

STOP_SLACK = 10.0
"""Seconds a signalled worker is given past its drain and shutdown timeouts before it is
killed."""

_PR_SET_PDEATHSIG = 1


def generated_node_id() -> str:
    """A node name unique across restarts: the host name and a random suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def supervise(argv: Sequence[str], *, count: int, node_id: str, stop_timeout: float) -> int:
    """Run ``count`` workers of ``runcast <argv>`` until a signal (0) or a worker's exit (1, or 2
    for a configuration the worker refused); a signalled worker that has not exited within
    ``stop_timeout`` seconds is killed."""
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        supervisor = os.getpid()
        for i in range(count):
            if stopping:
                break  # a signal while they start: those started have had it
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", *argv, "--node-id", f"{node_id}-{i}"],
                    env={**os.environ, WORKER_ENV: str(i)},
                    preexec_fn=functools.partial(_die_with, supervisor),
                )
            )
        if not stopping:
            log.info("started %d workers (nodes %s-0..%d)", count, node_id, count - 1)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(POLL)
        signalled = bool(stopping)
        status = 0
        if not signalled:
            dead = next(c for c in children if c.returncode is not None)
            log.error(
                "worker %d exited with status %s: stopping the others",
                children.index(dead),
                dead.returncode,
            )
            status = 2 if dead.returncode == 2 else 1
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + stop_timeout
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker %d did not stop in %gs: killed", children.index(child), stop_timeout
                )
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signalled:
        return 0 if all(child.returncode == 0 for child in children) else 1
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
