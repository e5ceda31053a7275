"""End-to-end parse benchmark: upstream bytes -> typed Assistants events.

Measured in one run over the same generated stream (``_streams.make_run_stream``, mostly
``thread.message.delta``), fed in 4 KiB and 256-byte chunks:

* runcast: ``parsers.sse.SSEDecoder`` + ``parsers.assistants.decode_event``;
* openai SDK: its own path for a streamed run (``openai/_streaming.py``): ``SSEDecoder.iter_bytes``
  over the chunks, the ``[DONE]`` prefix test, ``sse.json()`` and the typed construction
  ``Stream.__stream__`` hands to ``_process_response_data``, i.e.
  ``construct_type(type_=AssistantStreamEvent, value={"data": ..., "event": ...})``;
* floor: msgspec decoding of the pre-extracted ``data`` payloads alone, with decoders of the
  same payload types, each paired with its payload beforehand (no SSE, no dispatch).

The "+ key scrub" rows add what ``gateway.upstream.transport`` does to every body chunk when
runcast holds the upstream key (``gateway.upstream.scrub.StreamScrubber``), so their ratio to
the plain rows is the cost of masking the key; without a key the scrubber is not on the path.

Breakdown rows (SSE alone, ``decode_event`` alone over pre-decoded SSE events, accumulation)
show where the runcast time goes. Targets: runcast >= 40x the SDK at 4 KiB chunks, and runcast
time <= 2.5x the floor's.

    .venv/bin/python bench/parse_bench.py [--events N] [--repeat R] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _streams import make_run_stream

from gateway.upstream.scrub import Scrubber
from parsers.accumulate import RunAccumulator
from parsers.assistants import (
    ErrorEnvelope,
    Message,
    MessageDelta,
    Run,
    RunStep,
    RunStepDelta,
    Thread,
    decode_event,
)
from parsers.sse import ServerSentEvent, SSEDecoder

CHUNK_SIZES = (4096, 256)
TARGET_VS_SDK = 40.0
TARGET_VS_FLOOR = 2.5


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    count = fn()
    return time.perf_counter() - start, count


def interleaved(rounds: int, cases: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int]]:
    """Best time of each case over ``rounds`` round-robin passes, so a burst of load from other
    processes hits every case alike instead of skewing one ratio."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(rounds):
        for name, fn in cases.items():
            seconds, count = timed(fn)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, count)
    return best


def runcast_path(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            decode_event(sse)
            n += 1
    for sse in decoder.close():
        decode_event(sse)
        n += 1
    return n


BENCH_KEY = b"sk-proj-" + b"x7Qm2" * 32
"""Shaped like an OpenAI project key (~170 bytes): the hold-back test looks at up to len - 1."""


def scrubbed_path(chunks: list[bytes], scrubber: Scrubber) -> int:
    """:func:`runcast_path` with every chunk masked first, as the transport does with a key."""
    stream = scrubber.stream()
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for sse in decoder.feed(stream.feed(chunk)):
            decode_event(sse)
            n += 1
    for sse in decoder.feed(stream.close()) + decoder.close():
        decode_event(sse)
        n += 1
    return n


def sse_only(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        n += len(decoder.feed(chunk))
    return n + len(decoder.close())


def make_sdk_path() -> Callable[[list[bytes]], int]:
    from openai._models import construct_type
    from openai._streaming import SSEDecoder as SDKDecoder
    from openai.types.beta import AssistantStreamEvent

    def sdk_path(chunks: list[bytes]) -> int:
        n = 0
        for sse in SDKDecoder().iter_bytes(iter(chunks)):
            n += 1
            # Stream.__stream__ (openai/_streaming.py), legacy mode, synthesize_event_and_data.
            if sse.data.startswith("[DONE]"):
                break
            if sse.event and sse.event.startswith("thread."):
                data = sse.json()
                construct_type(type_=AssistantStreamEvent, value={"data": data, "event": sse.event})
            else:
                data = sse.json()
                if isinstance(data, dict) and data.get("error"):
                    raise RuntimeError(data)
                construct_type(type_=AssistantStreamEvent, value={"data": data, "event": sse.event})
        return n

    return sdk_path


def floor_items(events: list[ServerSentEvent]) -> list[tuple[Callable[[bytes], Any], bytes]]:
    decoders: dict[str, Callable[[bytes], Any]] = {}
    types = {
        "thread.created": Thread,
        "thread.run.step.delta": RunStepDelta,
        "thread.message.delta": MessageDelta,
        "error": ErrorEnvelope,
    }
    for event in events:
        name = event.event
        if name in decoders or name == "done":
            continue
        if name not in types:
            prefix = name.rsplit(".", 1)[0]
            types[name] = {"thread.run": Run, "thread.run.step": RunStep}.get(prefix, Message)
        decoders[name] = msgspec.json.Decoder(types[name]).decode
    return [(decoders[e.event], e.data_bytes) for e in events if e.event != "done"]


def floor_path(items: list[tuple[Callable[[bytes], Any], bytes]]) -> int:
    for decode, data in items:
        decode(data)
    return len(items)


def decode_only(events: list[ServerSentEvent]) -> int:
    for event in events:
        decode_event(event)
    return len(events)


def decode_and_accumulate(events: list[ServerSentEvent]) -> int:
    acc = RunAccumulator()
    for event in events:
        acc.apply(decode_event(event))
    acc.snapshot()
    return len(events)


def unknown_type_events(events: list[ServerSentEvent], n: int) -> list[ServerSentEvent]:
    """Message deltas whose part has a type this version does not know (the tolerant path)."""
    deltas = [e for e in events if e.event == "thread.message.delta"][:n]
    return [
        ServerSentEvent(
            event=e.event, data_bytes=e.data_bytes.replace(b'"type":"text"', b'"type":"audio"')
        )
        for e in deltas
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events in the stream")
    parser.add_argument("--repeat", type=int, default=7, help="rounds of the runcast rows")
    parser.add_argument("--sdk-repeat", type=int, default=2, help="rounds of the SDK rows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    stream = make_run_stream(args.events)
    decoder = SSEDecoder()
    events = decoder.feed(stream) + decoder.close()
    items = floor_items(events)
    unknown = unknown_type_events(events, 5_000)
    known = [e for e in events if e.event == "thread.message.delta"][: len(unknown)]
    sdk_path = make_sdk_path()
    chunks = {size: chunked(stream, size) for size in CHUNK_SIZES}
    mb = len(stream) / 1e6
    scrubber = Scrubber(BENCH_KEY)

    fast = interleaved(
        args.repeat,
        {
            "floor": lambda: floor_path(items),
            "runcast 4096": lambda: runcast_path(chunks[4096]),
            "runcast 256": lambda: runcast_path(chunks[256]),
            "scrubbed 4096": lambda: scrubbed_path(chunks[4096], scrubber),
            "scrubbed 256": lambda: scrubbed_path(chunks[256], scrubber),
            "sse": lambda: sse_only(chunks[4096]),
            "decode": lambda: decode_only(events),
            "accumulate": lambda: decode_and_accumulate(events),
            "known": lambda: decode_only(known),
            "unknown": lambda: decode_only(unknown),
        },
    )
    slow = interleaved(
        args.sdk_repeat,
        {f"sdk {size}": (lambda c=chunks[size]: sdk_path(c)) for size in CHUNK_SIZES},
    )
    timings = {**fast, **slow}

    labels = [
        ("floor", "floor: msgspec payload decode", None),
        ("runcast 4096", "runcast: SSE + decode_event", 4096),
        ("sdk 4096", "openai SDK: SSEDecoder + construct_type", 4096),
        ("runcast 256", "runcast: SSE + decode_event", 256),
        ("sdk 256", "openai SDK: SSEDecoder + construct_type", 256),
        ("scrubbed 4096", "runcast + key scrub (--upstream-key)", 4096),
        ("scrubbed 256", "runcast + key scrub (--upstream-key)", 256),
        ("sse", "  breakdown: SSEDecoder alone", 4096),
        ("decode", "  breakdown: decode_event alone", None),
        ("accumulate", "  extra: decode_event + RunAccumulator", None),
        ("known", "  message deltas, known part type", None),
        ("unknown", "  message deltas, unknown part type", None),
    ]
    floor_s = timings["floor"][0]
    sdk_s = timings["sdk 4096"][0]
    rows: list[dict[str, Any]] = []
    for key, name, chunk in labels:
        seconds, count = timings[key]
        per_mb = mb if count == len(events) or key == "floor" else float("nan")
        rows.append(
            {
                "key": key,
                "name": name,
                "chunk": chunk,
                "seconds": seconds,
                "events": count,
                "events_per_s": count / seconds,
                "ns_per_event": seconds / count * 1e9,
                "mb_per_s": per_mb / seconds,
                # Ratios per event, so the short tolerant-path rows compare too.
                "speedup_vs_sdk_4k": (sdk_s / timings["sdk 4096"][1]) / (seconds / count),
                "time_vs_floor": (seconds / count) / (floor_s / timings["floor"][1]),
            }
        )

    deltas = sum(e.event == "thread.message.delta" for e in events)
    print(
        f"stream: {len(events):,} events, {mb:.2f} MB ({deltas / len(events):.0%} message deltas);"
        f" best of {args.repeat} interleaved rounds (SDK: {args.sdk_repeat})"
    )
    header = (
        f"{'path':42} {'chunk':>6} {'events/s':>11} {'ns/event':>9} {'MB/s':>7}"
        f" {'x SDK@4K':>9} {'x floor':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        chunk = "-" if r["chunk"] is None else str(r["chunk"])
        mb_s = "-" if r["mb_per_s"] != r["mb_per_s"] else f"{r['mb_per_s']:.1f}"
        print(
            f"{r['name']:42} {chunk:>6} {r['events_per_s']:>11,.0f} {r['ns_per_event']:>9,.0f}"
            f" {mb_s:>7} {r['speedup_vs_sdk_4k']:>9.1f} {r['time_vs_floor']:>8.2f}"
        )
    vs_sdk = sdk_s / timings["runcast 4096"][0]
    vs_sdk_256 = timings["sdk 256"][0] / timings["runcast 256"][0]
    vs_floor = timings["runcast 4096"][0] / floor_s
    ok_sdk = vs_sdk >= TARGET_VS_SDK
    ok_floor = vs_floor <= TARGET_VS_FLOOR
    print()
    print(
        f"runcast vs SDK @4 KiB: {vs_sdk:.1f}x faster (target >= {TARGET_VS_SDK:.0f}x) "
        f"{'PASS' if ok_sdk else 'MISS'};  @256 B: {vs_sdk_256:.1f}x"
    )
    print(
        f"runcast time vs floor @4 KiB: {vs_floor:.2f}x (target <= {TARGET_VS_FLOOR}x) "
        f"{'PASS' if ok_floor else 'MISS'}"
    )
    scrub_4k = timings["scrubbed 4096"][0] / timings["runcast 4096"][0] - 1
    scrub_256 = timings["scrubbed 256"][0] / timings["runcast 256"][0] - 1
    print(
        f"key scrubbing cost: {scrub_4k:+.1%} @4 KiB, {scrub_256:+.1%} @256 B (none without a key)"
    )
    tolerant = timings["unknown"][0] / timings["known"][0]
    print(f"tolerant fallback for an unknown part type: {tolerant:.1f}x a known delta's decode")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "command": "bench/parse_bench.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "events": len(events),
            "bytes": len(stream),
            "python": sys.version.split()[0],
            "rows": rows,
            "runcast_vs_sdk_4k": vs_sdk,
            "runcast_vs_sdk_256": vs_sdk_256,
            "runcast_vs_floor_4k": vs_floor,
            "tolerant_vs_known": tolerant,
            "key_scrub_cost_4k": scrub_4k,
            "key_scrub_cost_256": scrub_256,
            "targets_met": ok_sdk and ok_floor,
        }
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if ok_sdk and ok_floor else 1


if __name__ == "__main__":
    raise SystemExit(main())
