"""``runcast serve --workers N``: N gateway processes on one port, supervised by this one.

Each worker is ``runcast serve`` again with the same arguments, its own ``--node-id``
(``<node>-<i>``), :data:`WORKER_ENV` set to its index (so it serves instead of supervising)
and a listening socket bound with ``SO_REUSEPORT``, so the kernel spreads
connections over them; they share runs, channels and tool state through the Redis broker
(Redis mode is required, see :class:`~gateway.settings.Settings`). The supervisor only starts
them and forwards SIGINT/SIGTERM (each worker drains as a single process would). A worker
that exits on its own stops the others, and the supervisor exits with status 1 so that the
service manager restarts the set; what the dead worker owned is taken over by other nodes.
"""

from __future__ import annotations

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

STOP_TIMEOUT = 60.0
"""Longest wait for a signalled worker to exit before it is killed (above the default drain)."""


def generated_node_id() -> str:
    """A node name unique across restarts: the host name and a random suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def supervise(argv: Sequence[str], *, count: int, node_id: str) -> int:
    """Run ``count`` workers of ``runcast <argv>`` until a signal (0) or a worker's exit (1)."""
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                *argv,
                "--node-id",
                f"{node_id}-{i}",
            ],
            env={**os.environ, WORKER_ENV: str(i)},
        )
        for i in range(count)
    ]
    log.info("started %d workers (nodes %s-0..%d)", count, node_id, count - 1)
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(POLL)
        signalled = bool(stopping)
        if not signalled:
            dead = [c for c in children if c.returncode is not None]
            log.error(
                "worker %d exited with status %s: stopping the others",
                children.index(dead[0]),
                dead[0].returncode,
            )
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    clean = all(child.returncode == 0 for child in children)
    return 0 if signalled and clean else 1
