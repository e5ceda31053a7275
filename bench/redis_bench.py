"""Memory mode vs Redis mode, in one run: deliveries/s and delivery latency at N subscribers.

Memory mode: one MemoryBroker, N subscribers. Redis mode: two RedisBroker "nodes" (two brokers in
this process, each with its own connections and follower) sharing a private ``redis-server``, N/2
subscribers on each, publishing through the first. Subscribers are in-process sinks that take the
same pre-encoded bytes a socket would (no kernel socket cost in either mode, so the ratio shows
what the Redis path adds). Two loads: a steady rate (one event per publish) and a burst (batches
of ``--batch`` as fast as possible). Also reported for Redis: round trips (EVALSHA) per published
batch and Redis CPU seconds.

    python bench/redis_bench.py --subscribers 1000 --rate 200 --seconds 5 --burst 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from gateway.hub import Broker, EndReason, FrameFormat, HubEvent, HubSettings, MemoryBroker
from gateway.hub.redis import RedisBroker

CHANNEL = "run:bench"
DATA = (
    b'{"id":"msg_1","object":"thread.message.delta","delta":{"content":[{"index":0,'
    b'"type":"text","text":{"value":" the quick brown fox"}}]}}'
)


class CountingSink:
    """Counts deliveries; the first sink of each node also records each batch's arrival time."""

    def __init__(self, published: dict[int, float] | None) -> None:
        self.events = 0
        self.last_seq = 0
        self._published = published
        self.latencies: list[float] = []

    @property
    def frame_format(self) -> FrameFormat:
        return FrameFormat.SSE

    @property
    def end_reason(self) -> EndReason | None:
        return None

    def start(self, epoch: str) -> None:
        pass

    def send(self, frames: bytes, last_seq: int) -> bool:
        self.events += last_seq - self.last_seq
        self.last_seq = last_seq
        if self._published is not None and (t := self._published.get(last_seq)) is not None:
            self.latencies.append(time.perf_counter() - t)
        return True

    def heartbeat(self) -> bool:
        return True

    def poll(self) -> bool:
        return True

    def end(self, reason: EndReason) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Any:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.3)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


async def run_load(
    publisher: Broker, sinks: list[CountingSink], published: dict[int, float], args: Any
) -> dict[str, float]:
    out: dict[str, float] = {}
    total_subscribers = len(sinks)
    seq = 0
    # Steady rate: one event per publish.
    n = int(args.rate * args.seconds)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / args.rate
        if (delay := target - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        published[seq + 1] = time.perf_counter()
        seq = (await publisher.publish([CHANNEL], [HubEvent("thread.message.delta", DATA)]))[
            CHANNEL
        ].seq
    await _until_delivered(sinks, seq)
    lat = sorted(x for s in sinks for x in s.latencies)
    out["steady_p50_ms"] = statistics.median(lat) * 1000
    out["steady_p99_ms"] = lat[int(len(lat) * 0.99) - 1] * 1000
    for s in sinks:
        s.latencies.clear()
    # Burst: batches as fast as possible.
    before = sum(s.events for s in sinks)
    batches = args.burst // args.batch
    t0 = time.perf_counter()
    for _ in range(batches):
        published[seq + args.batch] = time.perf_counter()
        events = [HubEvent("thread.message.delta", DATA)] * args.batch
        seq = (await publisher.publish([CHANNEL], events))[CHANNEL].seq + args.batch - 1
    await _until_delivered(sinks, seq)
    elapsed = time.perf_counter() - t0
    delivered = sum(s.events for s in sinks) - before
    assert delivered == batches * args.batch * total_subscribers, delivered
    out["burst_deliveries_per_s"] = delivered / elapsed
    lat = sorted(x for s in sinks for x in s.latencies)
    out["burst_p99_ms"] = lat[int(len(lat) * 0.99) - 1] * 1000
    out["batches"] = n + batches
    return out


async def _until_delivered(sinks: list[CountingSink], seq: int) -> None:
    async with asyncio.timeout(120):
        while any(s.last_seq < seq for s in sinks):
            await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def nodes(mode: str, url: str | None) -> AsyncIterator[list[Broker]]:
    settings = HubSettings(max_history_events=100_000, max_history_bytes=256 << 20)
    if mode == "memory":
        async with MemoryBroker(settings) as broker:
            yield [broker]
        return
    assert url is not None
    async with (
        RedisBroker(url, settings, node_id="a") as a,
        RedisBroker(url, settings, node_id="b") as b,
    ):
        yield [a, b]


async def measure(mode: str, url: str | None, args: Any) -> dict[str, float]:
    published: dict[int, float] = {}
    async with nodes(mode, url) as brokers:
        await brokers[0].publish([CHANNEL], [HubEvent("thread.run.created", b"{}")])
        sinks: list[CountingSink] = []
        per_node = args.subscribers // len(brokers)
        for broker in brokers:
            for i in range(per_node):
                sink = CountingSink(published if i == 0 else None)
                sink.last_seq = 1
                await broker.subscribe(CHANNEL, sink)
                sinks.append(sink)
        stats_before: dict[str, Any] = {}
        client = aioredis.Redis.from_url(url) if url else None
        if client is not None:
            await client.config_resetstat()
            stats_before = await client.info("cpu")
        result = await run_load(brokers[0], sinks, published, args)
        if client is not None:
            cmd = await client.info("commandstats")
            cpu = await client.info("cpu")
            result["evalsha_per_batch"] = cmd["cmdstat_evalsha"]["calls"] / result["batches"]
            result["redis_cpu_s"] = sum(
                cpu[k] - stats_before[k] for k in ("used_cpu_sys", "used_cpu_user")
            )
            await client.aclose()
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--burst", type=int, default=5000)
    p.add_argument("--batch", type=int, default=10)
    args = p.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    with redis_server() as url:
        memory = asyncio.run(measure("memory", None, args))
        red = asyncio.run(measure("redis", url, args))
    print(f"N={args.subscribers} subscribers, {args.rate:g} events/s for {args.seconds:g} s, "
          f"burst {args.burst} events in batches of {args.batch}")  # fmt: skip
    for key in ("burst_deliveries_per_s", "steady_p50_ms", "steady_p99_ms", "burst_p99_ms"):
        print(f"  {key:24} memory {memory[key]:>12.1f}   redis {red[key]:>12.1f}")
    ratio = red["burst_deliveries_per_s"] / memory["burst_deliveries_per_s"]
    print(f"  redis/memory deliveries/s: {ratio:.2f}x (target >= 0.7x)")
    print(f"  redis p99 at {args.rate:g}/s minus memory p99: "
          f"{red['steady_p99_ms'] - memory['steady_p99_ms']:+.2f} ms (target <= +5 ms)")  # fmt: skip
    print(f"  Redis round trips (EVALSHA) per published batch: {red['evalsha_per_batch']:.2f}; "
          f"Redis CPU {red['redis_cpu_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
