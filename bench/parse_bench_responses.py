"""Parse benchmark for Responses API and Chat Completions streams: bytes -> typed events.

The same measurement as ``parse_bench.py`` (whose helpers it reuses), per protocol, in one run,
over generated streams (``_streams_responses``; mostly ``response.output_text.delta`` events,
resp. content chunks), fed in 4 KiB and 256-byte chunks (and runcast also in one feed, which
guards against work growing faster than the buffer, as when a replayed log is fed whole):

* runcast: ``parsers.sse.SSEDecoder`` + ``parsers.responses.decode_event`` (resp.
  ``parsers.chat.decode_chunk``);
* openai SDK: its own path for these streams (``openai/_streaming.py`` ``Stream.__stream__``):
  ``SSEDecoder.iter_bytes``, the ``[DONE]`` prefix test, ``sse.json()``, the ``error`` test and
  ``construct_type(type_=ResponseStreamEvent, value=data)`` (resp. ``ChatCompletionChunk``);
* floor: msgspec decoding each pre-extracted ``data`` payload into the same Struct runcast
  produces, with that Struct's own Decoder paired with it beforehand (no SSE, no dispatch).

Extra rows: the reducers (decode + ``ResponseAccumulator`` / ``ChatAccumulator``). Targets, as
for Assistants: runcast >= 40x the SDK at 4 KiB chunks, runcast time <= 2.5x the floor's.

    .venv/bin/python bench/parse_bench_responses.py [--events N] [--repeat R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _streams_responses import make_chat_stream, make_response_stream
from parse_bench import CHUNK_SIZES, TARGET_VS_FLOOR, TARGET_VS_SDK, chunked, interleaved

from parsers.chat import ChatAccumulator, ChatCompletionChunk, decode_chunk
from parsers.responses import ResponseAccumulator, TypedEvent, decode_event
from parsers.sse import ServerSentEvent, SSEDecoder

_Decode = Callable[[ServerSentEvent], Any]


def runcast_path(chunks: list[bytes], decode: _Decode) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            decode(sse)
            n += 1
    return n


def make_sdk_path(cast_to: Any) -> Callable[[list[bytes]], int]:
    from openai._models import construct_type
    from openai._streaming import SSEDecoder as SDKDecoder

    def sdk_path(chunks: list[bytes]) -> int:
        n = 0
        for sse in SDKDecoder().iter_bytes(iter(chunks)):
            n += 1
            if sse.data.startswith("[DONE]"):
                break
            data = sse.json()
            if isinstance(data, dict) and data.get("error"):
                raise RuntimeError(data)
            construct_type(type_=cast_to, value=data)
        return n

    return sdk_path


def response_floor_items(
    events: list[ServerSentEvent],
) -> list[tuple[Callable[[bytes], Any], bytes]]:
    classes = {cls.__struct_config__.tag: cls for cls in TypedEvent.__args__}
    decoders = {tag: msgspec.json.Decoder(cls).decode for tag, cls in classes.items()}
    items = []
    for event in events:
        tag = json.loads(event.data_bytes)["type"]
        items.append((decoders[tag], event.data_bytes))
    return items


def chat_floor_items(events: list[ServerSentEvent]) -> list[tuple[Callable[[bytes], Any], bytes]]:
    decode = msgspec.json.Decoder(ChatCompletionChunk).decode
    return [(decode, e.data_bytes) for e in events if e.data_bytes != b"[DONE]"]


def floor_path(items: list[tuple[Callable[[bytes], Any], bytes]]) -> int:
    for decode, data in items:
        decode(data)
    return len(items)


def reduce_path(events: list[ServerSentEvent], decode: _Decode, make: Callable[[], Any]) -> int:
    acc = make()
    for event in events:
        acc.apply(decode(event))
    acc.snapshot()
    return len(events)


def measure(
    label: str,
    stream: bytes,
    decode: _Decode,
    floor_items: list[tuple[Callable[[bytes], Any], bytes]],
    sdk_path: Callable[[list[bytes]], int],
    make_acc: Callable[[], Any],
    events: list[ServerSentEvent],
    args: argparse.Namespace,
) -> dict[str, Any]:
    chunks = {size: chunked(stream, size) for size in CHUNK_SIZES}
    fast = interleaved(
        args.repeat,
        {
            "floor": lambda: floor_path(floor_items),
            "runcast 4096": lambda: runcast_path(chunks[4096], decode),
            "runcast 256": lambda: runcast_path(chunks[256], decode),
            "runcast all": lambda: runcast_path([stream], decode),
            "reduce": lambda: reduce_path(events, decode, make_acc),
        },
    )
    slow = interleaved(
        args.sdk_repeat,
        {f"sdk {size}": (lambda c=chunks[size]: sdk_path(c)) for size in CHUNK_SIZES},
    )
    t = {**fast, **slow}
    per = {k: v[0] / v[1] for k, v in t.items()}  # seconds per event
    mb = len(stream) / 1e6
    print(f"\n{label}: {len(events):,} events, {mb:.2f} MB")
    header = (
        f"{'path':46} {'chunk':>6} {'events/s':>11} {'ns/event':>9} {'x SDK@4K':>9} {'x floor':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = [
        ("floor", "floor: msgspec payload decode", "-"),
        ("runcast 4096", "runcast: SSE + decode", "4096"),
        ("sdk 4096", "openai SDK: SSEDecoder + construct_type", "4096"),
        ("runcast 256", "runcast: SSE + decode", "256"),
        ("sdk 256", "openai SDK: SSEDecoder + construct_type", "256"),
        ("runcast all", "runcast: SSE + decode, the stream in one feed", "all"),
        ("reduce", "  extra: decode + accumulator + snapshot", "-"),
    ]
    for key, name, chunk in rows:
        print(
            f"{name:46} {chunk:>6} {1 / per[key]:>11,.0f} {per[key] * 1e9:>9,.0f}"
            f" {per['sdk 4096'] / per[key]:>9.1f} {per[key] / per['floor']:>8.2f}"
        )
    vs_sdk = t["sdk 4096"][0] / t["runcast 4096"][0]
    vs_sdk_256 = t["sdk 256"][0] / t["runcast 256"][0]
    vs_floor = per["runcast 4096"] / per["floor"]
    ok = vs_sdk >= TARGET_VS_SDK and vs_floor <= TARGET_VS_FLOOR
    print(
        f"{label} runcast vs SDK @4 KiB: {vs_sdk:.1f}x (target >= {TARGET_VS_SDK:.0f}x), "
        f"@256 B: {vs_sdk_256:.1f}x; time vs floor: {vs_floor:.2f}x "
        f"(target <= {TARGET_VS_FLOOR}x) {'PASS' if ok else 'MISS'}"
    )
    return {
        "events": len(events),
        "bytes": len(stream),
        "ns_per_event": {k: v * 1e9 for k, v in per.items()},
        "runcast_vs_sdk_4k": vs_sdk,
        "runcast_vs_sdk_256": vs_sdk_256,
        "runcast_vs_floor_4k": vs_floor,
        "targets_met": ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events per stream")
    parser.add_argument("--repeat", type=int, default=7, help="rounds of the runcast rows")
    parser.add_argument("--sdk-repeat", type=int, default=2, help="rounds of the SDK rows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from openai.types.chat import ChatCompletionChunk as SDKChunk
    from openai.types.responses import ResponseStreamEvent as SDKEvent

    results: dict[str, Any] = {}
    for label, stream, decode, floor, cast_to, make_acc in (
        (
            "responses",
            make_response_stream(args.events),
            decode_event,
            response_floor_items,
            SDKEvent,
            ResponseAccumulator,
        ),
        (
            "chat",
            make_chat_stream(args.events),
            decode_chunk,
            chat_floor_items,
            SDKChunk,
            ChatAccumulator,
        ),
    ):
        decoder = SSEDecoder()
        events = decoder.feed(stream) + decoder.close()
        results[label] = measure(
            label, stream, decode, floor(events), make_sdk_path(cast_to), make_acc, events, args
        )
    ok = all(r["targets_met"] for r in results.values())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = "bench/parse_bench_responses.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        args.json.write_text(
            json.dumps({"command": command, "python": sys.version.split()[0], **results}, indent=2)
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
