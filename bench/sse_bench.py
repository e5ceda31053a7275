"""SSE layer benchmark: ``parsers.sse.SSEDecoder`` against the openai SDK's own SSE decoder.

One generated run stream (``_streams.make_run_stream``: mostly ``thread.message.delta``, about
185 bytes per event) is fed in 4 KiB and 256-byte chunks to

* runcast: ``SSEDecoder.feed`` per chunk, then ``close()``; a second row also reads ``.data``
  (str) on every event, the form the SDK hands out;
* openai SDK: ``openai._streaming.SSEDecoder().iter_bytes(iter(chunks))``, the path
  ``Stream._iter_events`` takes over ``response.iter_bytes()``.

Both decoders must produce the same events (checked first). The same stream with CRLF line
endings guards the CR handling. Runs alternate between the two decoders and keep the best time.

    .venv/bin/python bench/sse_bench.py [--events N] [--repeat R] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _streams import make_run_stream

from parsers.sse import SSEDecoder

CHUNK_SIZES = (4096, 256)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def runcast_events(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    feed = decoder.feed
    n = 0
    for chunk in chunks:
        n += len(feed(chunk))
    return n + len(decoder.close())


def runcast_text(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for event in decoder.feed(chunk):
            event.data  # noqa: B018 - the str the SDK would hand out
            n += 1
    return n + len(decoder.close())


def sdk_decoder() -> Callable[[Iterator[bytes]], Iterator[Any]]:
    from openai._streaming import SSEDecoder as SDKDecoder

    return lambda chunks: SDKDecoder().iter_bytes(chunks)


def sdk_events(chunks: list[bytes]) -> int:
    n = 0
    for _ in sdk_decoder()(iter(chunks)):
        n += 1
    return n


def same_events(stream: bytes) -> None:
    decoder = SSEDecoder()
    ours = [(e.event, e.data) for e in decoder.feed(stream) + decoder.close()]
    theirs = [(e.event or "message", e.data) for e in sdk_decoder()(iter([stream]))]
    if ours != theirs:
        raise SystemExit("runcast and the SDK decoder disagree on the benchmark stream")


def best_times(
    repeat: int, contenders: dict[str, Callable[[], int]]
) -> dict[str, tuple[float, int]]:
    best: dict[str, tuple[float, int]] = {name: (float("inf"), 0) for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            gc.collect()
            start = time.perf_counter()
            count = fn()
            elapsed = time.perf_counter() - start
            if elapsed < best[name][0]:
                best[name] = (elapsed, count)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events in the stream")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (best kept)")
    parser.add_argument("--quick", action="store_true", help="5,000 events, 2 runs per row")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 5_000, 2

    lf = make_run_stream(args.events)
    streams = {"LF": lf, "CRLF": lf.replace(b"\n", b"\r\n")}
    for stream in streams.values():
        same_events(stream)
    n_events = runcast_events([lf])
    print(
        f"stream: {n_events:,} events, {len(lf) / 1e6:.2f} MB with LF "
        f"({len(lf) / n_events:.0f} B/event); best of {args.repeat}"
    )
    header = (
        f"{'decoder':34} {'EOL':>4} {'chunk':>6} {'events/s':>12} {'MB/s':>8} "
        f"{'ns/event':>9} {'x SDK':>7}"
    )
    print(header)
    print("-" * len(header))
    cases = [("LF", size) for size in CHUNK_SIZES] + [("CRLF", CHUNK_SIZES[0])]
    for eol, size in cases:
        stream = streams[eol]
        chunks = chunked(stream, size)
        results = best_times(
            args.repeat,
            {
                "runcast SSEDecoder": lambda c=chunks: runcast_events(c),
                "runcast SSEDecoder + .data (str)": lambda c=chunks: runcast_text(c),
                "openai SDK SSEDecoder.iter_bytes": lambda c=chunks: sdk_events(c),
            },
        )
        sdk_seconds = results["openai SDK SSEDecoder.iter_bytes"][0]
        for name, (seconds, count) in results.items():
            if count != n_events:
                raise SystemExit(f"{name} decoded {count} events, expected {n_events}")
            print(
                f"{name:34} {eol:>4} {size:>6} {count / seconds:>12,.0f} "
                f"{len(stream) / seconds / 1e6:>8.1f} {seconds / count * 1e9:>9.0f} "
                f"{sdk_seconds / seconds:>7.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
