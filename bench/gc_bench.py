"""What retained channels cost the cycle collector: tracked objects per run, and its pauses.

Channels outlive their runs (an ended run channel ``retention`` seconds, a thread channel
``idle_ttl``), and every container object they keep is walked by the collector's older
generations while the event loop stands still. This fills a ``MemoryBroker`` with N runs (a run
channel, closed, and a thread channel, each run's real events from
``tests/data/upstream/A-text.sse`` with the gateway's reducers), lets the broker's tick find the
thread channels at rest, and measures:

- **packed**: the hub as it is (ended and resting channels keep their reducer pickled and their
  history in tuples, ``gateway/hub/packed.py``);
- **live**: the previous design measured in the same run (``Channel.pack`` does nothing).

For each, the tracked objects the N runs added (per run), and the pause of a full collection
(``gc.collect()``, median of 5) and of the oldest young-to-middle one that would have walked
them all (``gc.collect(1)`` right after they were made, once). What was alive before the runs
is frozen first, as ``runcast serve`` freezes its startup heap (``gateway/heap.py``).

    python bench/gc_bench.py [--n 10000 30000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path

from gateway.http.app import _reducer
from gateway.hub import HubEvent, MemoryBroker
from gateway.hub import channel as channel_module
from gateway.hub.broker import HubSettings
from gateway.hub.memory import EXPIRY_ROUND_TICKS
from parsers.sse import SSEDecoder

ROOT = Path(__file__).resolve().parents[1]
RUN = SSEDecoder().feed((ROOT / "tests" / "data" / "upstream" / "A-text.sse").read_bytes())


async def fill(n: int) -> MemoryBroker:
    broker = MemoryBroker(
        HubSettings(sweep_interval=3600, heartbeat_interval=0.0, memory_budget=1 << 40),
        reducer_factory=_reducer,
    )
    events = [HubEvent(e.event, e.data_bytes) for e in RUN]
    for i in range(n):
        run, thread = f"run:run_{i}", f"thread:thread_{i}"
        await broker.publish([run, thread], events)
        await broker.close_channel(run)
    # The thread channels rest: a round of the broker's ticks finds each of them.
    later = asyncio.get_running_loop().time() + channel_module.PACK_AFTER + 1
    for _ in range(EXPIRY_ROUND_TICKS + 1):
        broker._sweep(later, heartbeat=False)
    return broker


async def measure(n: int, *, packed: bool) -> dict[str, float]:
    pack = channel_module.Channel.pack
    if not packed:
        channel_module.Channel.pack = lambda self: None  # type: ignore[method-assign]
    gc.collect()
    gc.freeze()  # as runcast serve does with its startup heap (gateway/heap.py)
    gc.disable()  # the pauses below are measured, not left to chance
    try:
        base = len(gc.get_objects())
        broker = await fill(n)
        t = time.perf_counter()
        gc.collect(1)  # what the middle generation's first collection walks: all of it
        middle = time.perf_counter() - t
        tracked = len(gc.get_objects()) - base
        full = []
        for _ in range(5):
            t = time.perf_counter()
            gc.collect()
            full.append(time.perf_counter() - t)
        held = broker.statistics().channels
        await broker.aclose()
    finally:
        gc.unfreeze()
        gc.enable()
        channel_module.Channel.pack = pack  # type: ignore[method-assign]
    return {
        "runs": n,
        "channels": held,
        "tracked_per_run": tracked / n,
        "middle_ms": middle * 1e3,
        "full_ms": statistics.median(full) * 1e3,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 30_000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n in args.n:
        live = await measure(n, packed=False)
        now = await measure(n, packed=True)
        rows.append({"live": live, "packed": now})
        print(
            f"{n:>7,} runs: tracked per run {live['tracked_per_run']:5.1f} -> "
            f"{now['tracked_per_run']:4.1f} ({live['tracked_per_run'] / now['tracked_per_run']:.1f}x"
            f" fewer) | full collection {live['full_ms']:7.1f} -> {now['full_ms']:6.1f} ms "
            f"({live['full_ms'] / now['full_ms']:.1f}x) | middle {live['middle_ms']:7.1f} -> "
            f"{now['middle_ms']:6.1f} ms ({live['middle_ms'] / now['middle_ms']:.1f}x)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
