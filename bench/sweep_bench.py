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

With ``--redis N`` (a private ``redis-server``), the Redis broker's periodic position check with N
finished runs mirrored: the longest event-loop stall and how long the follower (which applies
every live message) is held, now (the subscribed channels and a slice of the rest, in bounded
pipelines) against every channel compared in one pipeline (the previous design).

    python bench/sweep_bench.py [--n 10000 30000] [--redis 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
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


async def stalls(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """How long ``work`` takes, and the longest the event loop stood still meanwhile (the cycle
    collector kept out: its pauses are not the work's)."""
    gc.collect()
    gc.disable()
    try:
        return await _stalls(work)
    finally:
        gc.enable()


async def _stalls(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            longest = max(longest, time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t = time.perf_counter()
    await work()
    took = time.perf_counter() - t
    done = True
    await task
    return took, longest


async def measure_redis(url: str, n: int) -> None:
    from gateway.hub.redis import RedisBroker, follower

    settings = HubSettings(sweep_interval=3600, heartbeat_interval=0.0)
    async with RedisBroker(url, settings, position_check=3600) as broker:
        events = [HubEvent(e.event, e.data_bytes) for e in RUN]
        for i in range(n):
            run, thread = f"run:run_{i}", f"thread:thread_{i}"
            if i < WATCHED:
                await broker.subscribe(thread, BufferSink(), create=True)
            await broker.publish([run, thread], events)
            await broker.close_channel(run)
        checks = broker._follower
        now = await stalls(checks.check_positions)
        slice_ = follower.POSITION_SLICE
        follower.POSITION_SLICE = 1 << 30  # one pipeline of every channel: the previous check
        try:
            old = await stalls(lambda: checks.check_positions(everything=True))
        finally:
            follower.POSITION_SLICE = slice_
        held = broker.statistics().channels
    print(
        f"redis, {held:>7,} channels: position check now {now[0] * 1e3:6.1f} ms "
        f"(loop stall {now[1] * 1e3:5.1f} ms) | all at once {old[0] * 1e3:6.1f} ms "
        f"(loop stall {old[1] * 1e3:5.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[10_000, 30_000], help="runs held")
    parser.add_argument("--redis", type=int, nargs="*", default=[], help="runs, Redis mode")
    args = parser.parse_args()
    for n in args.n:
        asyncio.run(measure(n))
    if args.redis:
        sys.path.insert(0, str(Path(__file__).parent))
        from redis_bench import redis_server

        with redis_server() as url:
            for n in args.redis:
                asyncio.run(measure_redis(url, n))


if __name__ == "__main__":
    main()
