"""Property tests for parsers.sse: chunking never changes the output, the decoder agrees with a
literal transcription of the WHATWG rules, encode/decode round-trips, and arbitrary bytes either
decode or raise EventTooLarge, nothing else."""

from __future__ import annotations

import re
from itertools import pairwise

from _sse_reference import Outcome, bytes_needed, interpret
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.errors import EventTooLarge
from parsers.sse import ServerSentEvent, SSEDecoder, encode_sse

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that hit the decoder's special cases: line breaks of every kind, the fast-path block
# shapes, fields without colon or space, ids with NUL, retry values, BOM, invalid and multi-byte
# UTF-8, and Unicode separators that must not break lines.
FRAGMENTS = [
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b'event: thread.message.delta\ndata: {"v":1}\n\n',
    b"event: thread.message.delta\ndata: ",
    b"event: e\n",
    b"data: x\n\n",
    b"data: ",
    b"data:",
    b"data",
    b"event:",
    b"event: ",
    b"id: 1\n",
    b"id",
    b"id: a\x00b\n",
    b"retry: 150\n",
    b"retry: 1x\n",
    b"retry",
    b": comment\n",
    b":",
    b" ",
    b"x",
    b"\xef\xbb\xbf",
    b"\xef\xbb",
    b"\xff",
    b"\xc3",
    b"\xc3\xa9",
    "€".encode(),
    "\u2028".encode(),
    b"\x85",
    b"\x00",
]

streams = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6)), max_size=40).map(
    b"".join
)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


def run(chunks: list[bytes], limit: int | None = None) -> Outcome:
    decoder = SSEDecoder() if limit is None else SSEDecoder(max_event_bytes=limit)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return Outcome(
        events=[(e.event, e.data, e.id, e.retry) for e in events],
        last_event_id=decoder.last_event_id,
        retry=decoder.retry,
        truncated=decoder.truncated,
    )


@SETTINGS
@given(stream=streams, data=st.data())
def test_any_chunking_gives_the_events_of_the_spec(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    expected = interpret(stream)
    assert run([stream]) == expected
    assert run(split_at(stream, cuts)) == expected


@SETTINGS
@given(stream=streams)
def test_byte_by_byte_equals_whole(stream: bytes) -> None:
    assert run([stream[i : i + 1] for i in range(len(stream))]) == run([stream])


# Long runs of same-shape blocks (the split fast path), with payloads that may hold invalid
# UTF-8, CR or extra lines, interrupted by other shapes.
payloads = st.binary(max_size=12).filter(lambda b: 10 not in b)
blocks = st.one_of(
    payloads.map(lambda p: b"event: thread.message.delta\ndata: " + p + b"\n\n"),
    payloads.map(lambda p: b"event: thread.message.delta\r\ndata: " + p + b"\r\n\r\n"),
    payloads.map(lambda p: b"data: " + p + b"\n\n"),
    payloads.map(lambda p: b"event: e\ndata: " + p + b"\ndata: " + p + b"\n\n"),
    st.sampled_from([b"\n", b": ping\n\n", b"id: 7\n", b"event: x\n", b"retry: 5\n", b"data: "]),
)


@SETTINGS
@given(parts=st.lists(blocks, max_size=60), data=st.data())
def test_runs_of_fast_path_blocks_match_the_spec(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    size = data.draw(st.sampled_from([1, 7, 64, 300, 4096]))
    expected = interpret(stream)
    assert run([stream]) == expected
    assert run([stream[i : i + size] for i in range(0, len(stream), size)]) == expected


@SETTINGS
@given(stream=st.binary(max_size=300), data=st.data())
def test_arbitrary_bytes_decode_or_raise_event_too_large(
    stream: bytes, data: st.DataObject
) -> None:
    limit = data.draw(st.integers(1, 64))
    chunks = split_at(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    expected = interpret(stream)
    decoder = SSEDecoder(max_event_bytes=limit)
    got: list[ServerSentEvent] = []
    try:
        for chunk in chunks:
            got += decoder.feed(chunk)
        got += decoder.close()
    except EventTooLarge as exc:
        assert bytes_needed(stream) > limit
        assert exc.offset is not None
        assert 0 <= exc.offset <= len(stream)
        # What was dispatched before the error is what the spec dispatches first.
        assert [(e.event, e.data, e.id, e.retry) for e in got] == expected.events[: len(got)]
    else:
        assert bytes_needed(stream) <= limit
        assert run(chunks, limit) == expected
    assert run([stream]) == expected  # the default limit never gets in the way here


names = st.text(max_size=12).filter(lambda s: "\r" not in s and "\n" not in s)
frames = st.tuples(
    st.text(max_size=40) | st.binary(max_size=20).map(lambda b: b.decode("utf-8", "replace")),
    st.none() | names,
    st.none() | names.filter(lambda s: "\x00" not in s),
    st.none() | st.integers(0, 10**12),
)


@SETTINGS
@given(batch=st.lists(frames, max_size=12), data=st.data())
def test_encode_decode_round_trip(
    batch: list[tuple[str, str | None, str | None, int | None]], data: st.DataObject
) -> None:
    stream = b"".join(
        encode_sse(text, event=event, id=id_, retry=retry) for text, event, id_, retry in batch
    )
    expected = []
    last_id = ""
    for text, event, id_, retry in batch:
        last_id = last_id if id_ is None else id_
        expected.append((event or "message", re.sub(r"\r\n?", "\n", text), last_id, retry))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    outcome = run(split_at(stream, cuts))
    assert outcome.events == expected
    assert outcome.truncated is False


@SETTINGS
@given(batch=st.lists(st.tuples(st.binary(max_size=30), names), max_size=8))
def test_encoded_bytes_data_round_trips(batch: list[tuple[bytes, str]]) -> None:
    valid = [(d.decode("utf-8", "replace").encode(), name) for d, name in batch]
    stream = b"".join(encode_sse(d, event=name) for d, name in valid)
    decoder = SSEDecoder()
    events = decoder.feed(stream) + decoder.close()
    assert [e.data_bytes for e in events] == [
        d.replace(b"\r\n", b"\n").replace(b"\r", b"\n") for d, _ in valid
    ]
