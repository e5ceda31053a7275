"""The hub's housekeeping tick with many retained channels: how long it holds the event loop.

Ended runs' channels stay ``retention`` seconds (300 by default) for late joiners and resumes:
at 100 runs/s that is 60,000 channels (a run channel and a thread channel per run). The memory
broker's tick runs every ``sweep_interval`` (1 s) on the event loop, and nothing else moves
meanwhile. This fills a ``MemoryBroker`` with N ended run channels and N thread channels (each
run's real events from ``tests/data/upstream/A-text.sse``, with the gateway's reducers), a
hundred of them with a subscriber, then times ``EXPIRY_ROUND_TICKS`` ticks of:

- **now**: the broker's own tick (the subscribed channels, then a slice for expiry);
- **walk**: the previous design measured in the same run, every channel swept and checked for
  expiry at every tick (the loop the tick used to be).

    python bench/sweep_bench.py [--n 10000 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from gateway.http.app import _reducer
from gateway.hub import BufferSink, HubEvent, MemoryBroker
from gateway.hub.broker import HubSettings
from gateway.hub.memory import EXPIRY_ROUND_TICKS
from parsers.sse import SSEDecoder

ROOT = Path(__file__).resolve().parents[1]
RUN = SSEDecoder().feed((ROOT / "tests" / "data" / "upstream" / "A-text.sse").read_bytes())
WATCHED = 100


async def fill(n: int) -> tuple[MemoryBroker, list[BufferSink]]:
    broker = MemoryBroker(
        HubSettings(sweep_interval=3600, heartbeat_interval=0.0), reducer_factory=_reducer
    )
    events = [HubEvent(e.event, e.data_bytes) for e in RUN]
    sinks = []
    for i in range(n):
        run, thread = f"run:run_{i}", f"thread:thread_{i}"
        if i < WATCHED:
            sink = BufferSink()
            await broker.subscribe(thread, sink, create=True)
            sinks.append(sink)
        await broker.publish([run, thread], events)
        await broker.close_channel(run)
    return broker, sinks


def walk(broker: MemoryBroker, now: float) -> None:
    """The previous tick: every channel swept and checked (nothing expires here)."""
    for ch in list(broker._channels.values()):
        ch.sweep(now, heartbeat=False)
        ch.expired(now)


async def measure(n: int) -> None:
    broker, _sinks = await fill(n)
    now = asyncio.get_running_loop().time()
    times: dict[str, list[float]] = {"now": [], "walk": []}
    for _ in range(EXPIRY_ROUND_TICKS):
        for name, tick in (
            ("now", lambda: broker._sweep(now, heartbeat=False)),
            ("walk", lambda: walk(broker, now)),
        ):
            t = time.perf_counter()
            tick()
            times[name].append(time.perf_counter() - t)
    held = broker.statistics().channels
    await broker.aclose()
    new, old = times["now"], times["walk"]
    print(
        f"{held:>7,} channels: tick now p50 {statistics.median(new) * 1e3:6.2f} ms, "
        f"max {max(new) * 1e3:6.2f} ms | walk p50 {statistics.median(old) * 1e3:6.2f} ms, "
        f"max {max(old) * 1e3:6.2f} ms | longest stall {max(old) / max(new):.1f}x shorter"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 30_000], help="runs held")
    args = parser.parse_args()
    for n in args.n:
        asyncio.run(measure(n))


if __name__ == "__main__":
    main()
