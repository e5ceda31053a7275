"""Shared constants and helpers of the fan-out benchmark's server, clients and driver."""

from __future__ import annotations

import os
import re
import resource

CHANNEL = "run:bench"
EVENT_NAME = "thread.message.delta"
MARK = b'"t":'
TS_RE = re.compile(rb'"t":(\d+),')
CLIENT_PROCS = 2
CONNECT_CONCURRENCY = 200
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TARGETS = {
    "single_ratio_min": 0.6,
    "burst_ratio_min": 1.0,
    "paced_p99_ms_max": 20.0,
    "rss_per_sse_subscriber_kib_max": 20.0,
}


def payload(t_ns: int, i: int, pad: bytes) -> bytes:
    return b'{"t":%d,"i":%d,"p":"%s"}' % (t_ns, i, pad)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(cpu: int) -> None:
    """Server on CPU 0, clients on CPU 1 (when there are two): the two sides must not fight."""
    count = os.cpu_count() or 1
    if count >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % count})
