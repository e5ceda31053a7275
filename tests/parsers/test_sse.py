"""Unit tests for parsers.sse: the WHATWG event-stream rules, one trap per test, and encode_sse."""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from _sse_reference import interpret

from parsers.errors import EventTooLarge, LocalProtocolError, RemoteProtocolError
from parsers.sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder, encode_sse

DATA = Path(__file__).resolve().parents[1] / "data"


def chunks_of(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def feed_all(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def decode(stream: bytes, size: int | None = None, **kwargs: int) -> list[ServerSentEvent]:
    return feed_all(SSEDecoder(**kwargs), [stream] if size is None else chunks_of(stream, size))


def triples(events: list[ServerSentEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, e.data, e.id) for e in events]


def datas(stream: bytes, size: int | None = None) -> list[str]:
    return [e.data for e in decode(stream, size)]


def datas_limited(stream: bytes, limit: int, size: int | None) -> list[str]:
    return [e.data for e in decode(stream, size, max_event_bytes=limit)]


# -- the event value ------------------------------------------------------------------------------


def test_event_fields_and_defaults() -> None:
    [event] = decode(b"data: {}\n\n")
    assert event == ServerSentEvent(event="message", data_bytes=b"{}", id="", retry=None)
    assert (event.event, event.data, event.id, event.retry) == ("message", "{}", "", None)
    assert ServerSentEvent() == ServerSentEvent(event="message", data_bytes=b"", id="", retry=None)


def test_data_bytes_are_the_wire_bytes_and_data_is_text() -> None:
    payload = '{"value":"4 °C"}'.encode()
    [event] = decode(b"event: thread.message.delta\ndata: " + payload + b"\n\n")
    assert event.data_bytes == payload
    assert event.data == '{"value":"4 °C"}'
    assert event.event == "thread.message.delta"


# -- line endings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_cr_all_end_lines(eol: bytes) -> None:
    stream = eol.join([b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    for size in (None, 1, 2, 3, 5):
        assert triples(decode(stream, size)) == [("a", "1\n2", ""), ("message", "3", "")]


def test_crlf_split_across_chunks_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    # Had the LF counted as a second break, "a" would have been dispatched alone above.
    [event] = decoder.feed(b"\n\r\n")
    assert event.data == "a\nb"


def test_cr_at_chunk_end_then_other_byte() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The CR opening this chunk is a blank line of its own, not the second half of a CRLF.
    assert [e.data for e in decoder.feed(b"\rdata: b\r\r")] == ["a", "b"]
    assert [e.data for e in decoder.feed(b"data: c\r\r")] == ["c"]
    assert decoder.close() == []


def test_cr_alone_dispatches_without_waiting_for_lf() -> None:
    decoder = SSEDecoder()
    [event] = decoder.feed(b"data: x\r\r")
    assert event.data == "x"
    assert decoder.close() == []
    assert decoder.truncated is False


def test_mixed_line_endings() -> None:
    assert datas(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r\n\n") == ["a\nb\nc", "d"]


@pytest.mark.parametrize(
    "separator",
    [
        "\x85".encode(),
        "\u2028".encode(),
        "\u2029".encode(),
        b"\x85",
        b"\x0b",
        b"\x0c",
        b"\x1c",
        b"\x1e",
    ],
)
def test_only_cr_and_lf_break_lines(separator: bytes) -> None:
    stream = b"data: a" + separator + b"b\n\n"
    for size in (None, 1):
        [event] = decode(stream, size)
        assert event.data == (b"a" + separator + b"b").decode("utf-8", "replace")


# -- BOM -------------------------------------------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    assert triples(decode(b"\xef\xbb\xbfevent: e\ndata: 1\n\n")) == [("e", "1", "")]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_bom_split_across_chunks(cut: int) -> None:
    stream = b"\xef\xbb\xbfdata: 1\n\n"
    decoder = SSEDecoder()
    events = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) + decoder.close()
    assert [e.data for e in events] == ["1"]


def test_bom_arriving_byte_by_byte() -> None:
    assert datas(b"\xef\xbb\xbfdata: 1\n\n", 1) == ["1"]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM belongs to the first field's name, which is then unknown.
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: 1\n\ndata: 2\n\n") == ["2"]


def test_bom_after_stream_start_is_not_stripped() -> None:
    assert datas(b"data: 1\n\n\xef\xbb\xbfdata: 2\n\ndata: 3\n\n") == ["1", "3"]


def test_bom_prefix_that_is_no_bom_is_kept() -> None:
    # EF BB then a non-BF byte: no BOM; the bytes are invalid UTF-8 in a field name.
    for size in (None, 1, 2):
        assert datas(b"\xef\xbbdata: 1\n\ndata: 2\n\n", size) == ["2"]


def test_stream_of_only_a_partial_bom_is_truncated() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.close() == []
    assert decoder.truncated is True


# -- fields ----------------------------------------------------------------------------------------


def test_comment_lines_are_ignored() -> None:
    stream = b": keep-alive\ndata: 1\n:\n: another\ndata: 2\n\n:\n\n"
    assert datas(stream) == ["1\n2"]


def test_field_without_colon_has_empty_value() -> None:
    assert triples(decode(b"data\n\nevent\ndata: x\n\n")) == [
        ("message", "", ""),
        ("message", "x", ""),
    ]


def test_one_leading_space_is_stripped() -> None:
    assert datas(b"data:no space\n\ndata: one\n\ndata:  two\n\ndata:\ttab\n\n") == [
        "no space",
        "one",
        " two",
        "\ttab",
    ]


def test_value_keeps_further_colons() -> None:
    [event] = decode(b"event: a:b\ndata: c: d\n\n")
    assert (event.event, event.data) == ("a:b", "c: d")


def test_unknown_and_wrong_case_fields_are_ignored() -> None:
    stream = b"Data: 1\nDATA: 2\ndata : 3\n data: 4\nfoo: 5\nEvent: x\ndata: ok\n\n"
    assert triples(decode(stream)) == [("message", "ok", "")]


def test_data_lines_are_joined_with_lf() -> None:
    assert datas(b"data: YHOO\ndata: +2\ndata: 10\n\n") == ["YHOO\n+2\n10"]


def test_single_empty_data_line_dispatches_empty_string() -> None:
    assert datas(b"data:\n\n") == [""]
    assert datas(b"data: \n\n") == [""]
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_block_without_data_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\n\nid: 7\n\nretry: 10\n\n: c\n\n\n\n") == []
    assert decoder.last_event_id == "7"
    assert decoder.retry == 10


def test_event_type_is_reset_after_dispatch() -> None:
    assert triples(decode(b"event: a\ndata: 1\n\ndata: 2\n\n")) == [
        ("a", "1", ""),
        ("message", "2", ""),
    ]


def test_event_type_of_undispatched_block_is_forgotten() -> None:
    assert triples(decode(b"event: a\n\ndata: 1\n\n")) == [("message", "1", "")]


def test_empty_event_name_means_message() -> None:
    assert triples(decode(b"event:\ndata: 1\n\nevent: \ndata: 2\n\n")) == [
        ("message", "1", ""),
        ("message", "2", ""),
    ]


def test_more_event_names_than_the_decoder_caches() -> None:
    # Names past the cache's bound are decoded each time, never dropped or mixed up; runs of
    # each name and single blocks alternate, in reads of every size.
    names = [f"kind.{i}" for i in range(300)]
    stream = b"".join(
        f"event: {name}\ndata: {i}\n\n".encode() * (1 + i % 3) for i, name in enumerate(names)
    )
    expected = [(name, str(i), "") for i, name in enumerate(names) for _ in range(1 + i % 3)]
    for size in (None, 7, 4096):
        assert triples(decode(stream, size)) == expected


def test_last_event_id_persists_across_events() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", "2"]
    assert decoder.last_event_id == "2"


def test_id_line_after_data_in_same_block_applies_to_it() -> None:
    [event] = decode(b"data: a\nid: 9\n\n")
    assert event.id == "9"


def test_empty_id_resets_last_event_id() -> None:
    events = decode(b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\n")
    assert [e.id for e in events] == ["1", "", "3", ""]


def test_id_containing_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]
    assert decoder.last_event_id == "1"


def test_retry_is_set_only_from_ascii_digits() -> None:
    decoder = SSEDecoder()
    assert decoder.retry is None
    stream = (
        b"retry: 3000\ndata: a\n\n"
        b"retry: 1000x\ndata: b\n\n"
        b"retry: -5\nretry: +5\nretry: 1.5\nretry: \xd9\xa3\nretry\nretry: \ndata: c\n\n"
        b"retry: 03000\ndata: d\n\n"
    )
    events = decoder.feed(stream)
    assert [e.retry for e in events] == [3000, None, None, 3000]
    assert decoder.retry == 3000


def test_retry_beyond_the_int_digit_limit_is_ignored() -> None:
    decoder = SSEDecoder()
    [event] = decoder.feed(b"retry: 5\n\nretry: " + b"9" * 5000 + b"\ndata: x\n\n")
    assert event.retry is None
    assert decoder.retry == 5


def test_event_retry_is_that_of_its_own_block() -> None:
    events = decode(b"retry: 10\ndata: a\n\ndata: b\n\nretry: 20\ndata: c\n\n")
    assert [e.retry for e in events] == [10, None, 20]


# -- UTF-8 ------------------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_never_raised() -> None:
    stream = b"event: \xffname\nid: \xc3\ndata: a\xe2\x82b\ndata: \xed\xa0\x80\n\n"
    [event] = decode(stream)
    assert event.event == "\ufffdname"
    assert event.id == "\ufffd"
    assert event.data == "a\ufffdb\n\ufffd\ufffd\ufffd"
    assert event.data_bytes == event.data.encode()
    assert triples([event]) == [interpret(stream).events[0][:3]]


def test_invalid_utf8_in_fast_path_blocks_is_replaced() -> None:
    stream = b"".join(b"event: e\ndata: %d\xff\n\n" % i for i in range(40))
    for size in (None, 7, 64, 4096):
        assert [e.data for e in decode(stream, size)] == [f"{i}\ufffd" for i in range(40)]


def test_multibyte_characters_split_at_every_byte() -> None:
    text = "é € 𝄞 °C"
    stream = b"event: n\xc3\xa9\ndata: " + text.encode() + b"\n\n"
    for cut in range(1, len(stream)):
        decoder = SSEDecoder()
        events = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [(e.event, e.data) for e in events] == [("né", text)]


def test_truncated_multibyte_sequence_before_line_break() -> None:
    assert datas(b"data: \xe2\x82\n\n") == ["\ufffd"]


# -- end of input ------------------------------------------------------------------------------------


def test_event_without_final_blank_line_is_not_dispatched_and_truncated() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nid: x\ndata: b\n") == [
        ServerSentEvent(event="message", data_bytes=b"a", id="", retry=None)
    ]
    assert decoder.close() == []
    assert decoder.truncated is True


def test_partial_line_at_eof_is_truncated() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\ndata: b")
    assert decoder.close() == []
    assert decoder.truncated is True


def test_clean_end_is_not_truncated() -> None:
    for stream in (b"", b"data: a\n\n", b"data: a\n\n: bye\n", b"event: x\n\n", b"\n\n\n"):
        decoder = SSEDecoder()
        feed_all(decoder, [stream])
        assert decoder.truncated is False, stream


def test_only_a_field_line_pending_is_truncated() -> None:
    for pending in (b"event: x\n", b"id: 3\n", b"retry: 1\n", b"foo\n"):
        decoder = SSEDecoder()
        decoder.feed(b"data: a\n\n" + pending)
        decoder.close()
        assert decoder.truncated is True, pending


def test_feed_after_close_raises() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    decoder.close()
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"data: b\n\n")
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"")


def test_close_is_idempotent() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a")
    assert decoder.close() == []
    assert decoder.close() == []
    assert decoder.truncated is True


def test_empty_chunks_change_nothing() -> None:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in (b"", b"data: a\r", b"", b"\n", b"", b"\r\n", b""):
        events += decoder.feed(chunk)
    assert [e.data for e in events] == ["a"]
    assert decoder.offset == 11


def test_bytes_like_chunks_are_accepted() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(bytearray(b"data: a\n")) + decoder.feed(memoryview(b"\ndata: b\n\n"))
    assert [e.data for e in events] == ["a", "b"]


def test_offset_counts_every_byte_fed() -> None:
    decoder = SSEDecoder()
    for chunk in (b"\xef\xbb", b"\xbfdata: a\r", b"\n\r\n", b"partial"):
        decoder.feed(chunk)
    assert decoder.offset == 21


# -- limits ----------------------------------------------------------------------------------------


def test_default_limit() -> None:
    assert DEFAULT_MAX_EVENT_BYTES == 16 * 1024 * 1024
    assert decode(b"data: " + b"x" * 100_000 + b"\n\n")[0].data_bytes == b"x" * 100_000


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(max_event_bytes=0)


def test_line_exactly_at_the_limit_is_accepted() -> None:
    stream = b"data:" + b"x" * 5 + b"\n\n"  # the line is 10 bytes
    for size in (None, 1, 3):
        assert datas_limited(stream, 10, size) == ["xxxxx"]


@pytest.mark.parametrize("size", [None, 1, 4, 9, 64])
def test_complete_line_over_the_limit_raises_with_its_offset(size: int | None) -> None:
    stream = b"data: a\n\n" + b"data: " + b"x" * 20 + b"\n\n"
    decoder = SSEDecoder(max_event_bytes=10)
    with pytest.raises(EventTooLarge) as info:
        feed_all(decoder, [stream] if size is None else chunks_of(stream, size))
    assert info.value.offset == 9
    assert info.value.limit == 10
    assert isinstance(info.value, RemoteProtocolError)


def test_events_before_a_partial_line_over_the_limit_ride_on_the_error() -> None:
    # A read that completed events and ended inside a line already past the limit raised
    # without them: events the upstream had sent whole were lost (a 16 KiB read stopping
    # inside a 16 KiB line after four run events).
    decoder = SSEDecoder(max_event_bytes=16)
    assert [e.data for e in decoder.feed(b"data: a\n\n")] == ["a"]
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"event: e\ndata: b\n\ndata: c\n\ndata: " + b"x" * 40)
    assert [(e.event, e.data) for e in info.value.events] == [("e", "b"), ("message", "c")]
    assert info.value.offset == 36


def test_growing_partial_line_raises_before_it_ends() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    decoder.feed(b"data: ok\n\n: ")
    with pytest.raises(EventTooLarge) as info:
        for _ in range(100):
            decoder.feed(b"y" * 16)
    assert info.value.offset == 10
    assert decoder.offset < 10 + 100


def test_offset_counts_raw_bytes_with_crlf() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\n\r\n" + b"data: " + b"x" * 20 + b"\r\n\r\n"
    for size in (None, 1, 5):
        with pytest.raises(EventTooLarge) as info:
            decode(stream, size, max_event_bytes=10)
        assert info.value.offset == 22


def test_joined_data_over_the_limit_raises_at_the_line_that_crossed_it() -> None:
    stream = b"data:1234\ndata:5678\ndata:9\n\n"  # lines of 9, 9 and 6 bytes; data of 11
    for size in (None, 1, 4):
        with pytest.raises(EventTooLarge) as info:
            decode(stream, size, max_event_bytes=10)
        assert info.value.offset == 20
    assert datas_limited(stream, 11, None) == ["1234\n5678\n9"]


def test_block_longer_than_the_limit_with_short_lines_is_fine() -> None:
    # Each line fits, so a block of several lines must not count as one long line, however the
    # stream is cut (an unfinished block is sometimes held whole between chunks).
    stream = b"event: abcdefghijklmn\ndata: 0123456789ab\n\n" * 3
    for size in (None, 1, 5, 30, 40, 43):
        assert datas_limited(stream, 21, size) == ["0123456789ab"] * 3


def test_overlong_data_line_after_an_event_line_reports_the_data_line_start() -> None:
    decoder = SSEDecoder(max_event_bytes=20)
    assert decoder.feed(b"event: e\ndata: ") == []
    assert decoder.feed(b"x" * 10) == []  # "data: " + 10 bytes still fits
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"x" * 5)
    assert info.value.offset == 9


def test_limit_counts_wire_bytes_of_invalid_utf8() -> None:
    stream = b"data:\xff\xff\xff\xff\ndata:\xff\xff\xff\xff\n\n"  # 9 wire bytes of data
    expected = ["\ufffd" * 4 + "\n" + "\ufffd" * 4]
    for size in (None, 1):
        assert datas_limited(stream, 10, size) == expected


def test_decoder_refuses_input_after_an_error() -> None:
    decoder = SSEDecoder(max_event_bytes=8)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: 0123456789\n\n")
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"data: a\n\n")
    assert decoder.close() == []
    assert decoder.truncated is True


# -- fast path against the general rules ------------------------------------------------------------


def test_runs_of_same_shape_blocks_interleaved_with_other_shapes() -> None:
    parts = []
    for i in range(30):
        parts.append(b'event: thread.message.delta\ndata: {"i":%d}\n\n' % i)
        if i % 7 == 3:
            parts.append(b"data: plain %d\n\n" % i)
        if i % 11 == 5:
            parts.append(b"event: thread.message.delta\ndata: a\ndata: b\n\n")
        if i % 13 == 4:
            parts.append(b"id: %d\n: note\nevent: other\ndata: x\n\n\n" % i)
    stream = b"".join(parts)
    expected = interpret(stream).events
    for size in (None, 1, 2, 17, 64, 100, 256, 4096):
        got = [(e.event, e.data, e.id, e.retry) for e in decode(stream, size)]
        assert got == expected, size


def test_golden_streams_decode_like_the_reference() -> None:
    streams = sorted((DATA / "assistants").glob("*.sse"))
    assert streams
    for path in streams:
        stream = path.read_bytes()
        expected = interpret(stream).events
        assert expected
        for size in (None, 1, 13, 256, 4096):
            got = [(e.event, e.data, e.id, e.retry) for e in decode(stream, size)]
            assert got == expected, (path.name, size)


# -- web-platform-tests eventsource format cases and the spec's examples ---------------------------

WPT_CASES = [
    # format-field-parsing
    (
        b"data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\ndata:3\r"
        b"data:\r\n data:32\ndata:4\n\n",
        [("message", "\x00\n 2\n1\n3\n\n4")],
    ),
    # format-field-unknown
    (
        b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n",
        [("message", "test\n\ntest")],
    ),
    # format-leading-space
    (b"data:\ttest\rdata: \ndata:test\n\n", [("message", "\ttest\n\ntest")]),
    # format-newlines
    (b"data:test\r\ndata\ndata:test\r\n\r\n", [("message", "test\n\ntest")]),
    # format-null-character
    (b"data:\x00\n\n\n\n", [("message", "\x00")]),
    # format-utf-8
    ("data:ok€\n\n".encode(), [("message", "ok€")]),
    # format-field-data
    (
        b"data:\n\ndata\ndata\n\ndata:test\n\n",
        [("message", ""), ("message", "\n"), ("message", "test")],
    ),
    # format-field-event, format-field-event-empty
    (b"event:test\ndata:x\n\ndata:x\n\n", [("test", "x"), ("message", "x")]),
    (b"event: \ndata:data\n\n", [("message", "data")]),
    # format-comments
    (
        b"data:1\r:\x00\n:\r\ndata:2\n:"
        + b"x" * 2049
        + b"\rdata:3\n:data:fail\r:"
        + b"x" * 2049
        + b"\ndata:4\n\n",
        [("message", "1\n2\n3\n4")],
    ),
    # format-bom, format-bom-2
    (
        b"\xef\xbb\xbfdata:1\n\n\xef\xbb\xbfdata:2\n\ndata:3\n\n",
        [("message", "1"), ("message", "3")],
    ),
    (
        b"\xef\xbb\xbf\xef\xbb\xbfdata:1\n\ndata:2\n\ndata:3\n\n",
        [("message", "2"), ("message", "3")],
    ),
    # format-data-before-final-empty-line
    (b"retry:1000\ndata:test1\n\nid:test\ndata:test2", [("message", "test1")]),
    # format-field-retry-empty
    (b"retry\ndata:test\n\n", [("message", "test")]),
    # HTML spec examples (9.2.5)
    (b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10")]),
    (b"data\n\ndata\ndata\n\ndata:", [("message", ""), ("message", "\n")]),
    (b"data:test\n\ndata: test\n\n", [("message", "test"), ("message", "test")]),
]


@pytest.mark.parametrize(("stream", "expected"), WPT_CASES)
def test_wpt_and_spec_vectors(stream: bytes, expected: list[tuple[str, str]]) -> None:
    for size in (None, 1, 3):
        assert [(e.event, e.data) for e in decode(stream, size)] == expected


def test_spec_example_ids() -> None:
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    assert triples(decode(stream)) == [
        ("message", "first event", "1"),
        ("message", "second event", ""),
        ("message", " third event", ""),
    ]


def test_wpt_retry_vectors() -> None:
    decoder = SSEDecoder()
    feed_all(decoder, [b"retry:3000\nretry:1000x\ndata:x\n\n"])
    assert decoder.retry == 3000
    decoder = SSEDecoder()
    feed_all(decoder, [b"retry:03000\ndata:x\n\n"])
    assert decoder.retry == 3000


# -- encode_sse --------------------------------------------------------------------------------------


def test_encode_plain_frame() -> None:
    assert encode_sse('{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_sse(b"[DONE]", event="done") == b"event: done\ndata: [DONE]\n\n"


def test_encode_all_fields() -> None:
    frame = encode_sse("x", event="thread.run.created", id="42", retry=1500)
    assert frame == b"event: thread.run.created\nid: 42\nretry: 1500\ndata: x\n\n"
    [event] = decode(frame)
    assert (event.event, event.data, event.id, event.retry) == (
        "thread.run.created",
        "x",
        "42",
        1500,
    )


def test_encode_multiline_data_maps_cr_and_crlf_to_lf() -> None:
    frame = encode_sse("a\nb\r\nc\rd\n")
    assert frame == b"data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
    assert datas(frame) == ["a\nb\nc\nd\n"]


def test_encode_keeps_leading_spaces_and_empty_data() -> None:
    assert datas(encode_sse(" lead") + encode_sse("") + encode_sse(":colon")) == [
        " lead",
        "",
        ":colon",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\rb"},
        {"id": "1\n"},
        {"id": "\r1"},
        {"id": "1\x002"},
        {"retry": -1},
    ],
)
def test_encode_rejects_what_the_decoder_could_not_read_back(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_sse("x", **kwargs)  # type: ignore[arg-type]


def test_encode_rejects_invalid_utf8_bytes() -> None:
    with pytest.raises(ValueError):
        encode_sse(b"\xff")
    assert encode_sse("é".encode()) == "data: é\n\n".encode()


def test_encoded_frames_concatenate_into_a_stream() -> None:
    stream = b"".join(encode_sse(str(i), event="e", id=str(i)) for i in range(5))
    assert triples(decode(stream, 3)) == [("e", str(i), str(i)) for i in range(5)]


def test_events_before_an_oversize_line_ride_on_the_error() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    chunk = b"event: a\ndata: 1\n\ndata: 2\n\ndata: " + b"x" * 100 + b"\n\n"
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(chunk)
    assert [(e.event, e.data) for e in info.value.events] == [("a", "1"), ("message", "2")]


def test_one_large_feed_of_short_runs_is_linear() -> None:
    # Runs of two same-named blocks, then another name: each run used to split the whole rest of
    # the buffer, so one large feed cost time quadratic in its size (here ~100x a chunked feed).
    block = b'event: %s\ndata: {"type":"%s","delta":"x"}\n\n'
    stream = b"".join(block % (name, name) * 2 for _ in range(3000) for name in (b"a.b", b"c.d"))
    chunked = chunks_of(stream, 4096)

    def best(feeds: list[bytes]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            events = feed_all(SSEDecoder(), feeds)
            times.append(time.perf_counter() - started)
        assert len(events) == 12000
        return min(times)

    assert decode(stream) == decode(stream, 4096)
    assert best([stream]) < 5 * best(chunked) + 0.05


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_runs_longer_than_the_split_span_decode_like_the_reference(newline: bytes) -> None:
    # Runs of hundreds of same-prefix blocks (tens of KiB, several split spans), broken by other
    # names, comments, multi-line data and ids; multi-byte characters so a span can end inside
    # one; one BOM at the start.
    parts = [b"\xef\xbb\xbf"]
    for i in range(3000):
        parts.append(
            b'event: response.output_text.delta\ndata: {"i":%d,"d":"\xc3\xa9\xe2\x82\xac"}\n\n' % i
        )
        if i % 401 == 7:
            parts.append(b"event: response.output_text.done\ndata: x\n\n")
        if i % 613 == 9:
            parts.append(b": keepalive\nid: %d\ndata: a\ndata: b\n\n" % i)
    stream = b"".join(parts).replace(b"\n", newline)
    expected = interpret(stream).events
    assert len(expected) > 3000
    for size in (None, 7, 4096, 9000, 65536):
        got = [(e.event, e.data, e.id, e.retry) for e in decode(stream, size)]
        assert got == expected, size


@pytest.mark.parametrize("size", [1024, 1500, 4096, 8000])
def test_a_read_opening_with_a_run_that_holds_other_fields_decodes_like_the_reference(
    size: int,
) -> None:
    # Reads of 1-8 KiB that open inside a run are split whole; blocks of the run's prefix whose
    # data goes on over more lines, or that carry an id or a retry, must still come out exactly
    # as the general rules give them, wherever the read boundaries fall.
    prefix = b"event: response.output_text.delta\ndata: "
    parts = []
    for i in range(600):
        parts.append(prefix + b'{"i":%d,"t":"\xe2\x82\xac"}\n\n' % i)
        if i % 37 == 5:
            parts.append(prefix + b"first\ndata: second\n\n")
        if i % 53 == 11:
            parts.append(prefix + b"with id\nid: %d\nretry: 250\n\n" % i)
    stream = b"".join(parts)
    expected = interpret(stream).events
    got = [(e.event, e.data, e.id, e.retry) for e in decode(stream, size)]
    assert got == expected


@pytest.mark.parametrize("size", [1024, 1500, 4096])
def test_a_line_over_the_limit_after_reads_inside_a_run_raises_with_its_offset(size: int) -> None:
    # Reads that continue a run keep the stream offsets exact: a line over the limit that opens
    # in the block a run's read left pending is reported where it starts.
    block = b'event: response.output_text.delta\ndata: {"t":"abc"}\n\n'
    head = block * 200
    start = len(head) + len(b"event: response.output_text.delta\n")
    stream = head + b"event: response.output_text.delta\ndata: " + b"x" * 3000 + b"\n\n"
    decoder = SSEDecoder(max_event_bytes=2000)
    events: list[ServerSentEvent] = []
    with pytest.raises(EventTooLarge) as info:
        for chunk in chunks_of(stream, size):
            events += decoder.feed(chunk)
    assert info.value.offset == start
    assert len(events) + len(info.value.events) == 200


@pytest.mark.parametrize("size", [None, 64, 1024, 4096])
def test_invalid_utf8_split_over_two_values_of_a_run_is_replaced_in_each(size: int | None) -> None:
    # A value ending in a lead byte followed by one opening with continuation bytes: each is
    # invalid on its own though the two together would be one valid character, so each is
    # replaced, and the bytes handed out are valid UTF-8.
    prefix = b"event: response.output_text.delta\ndata: "
    stream = b"".join(prefix + v + b"\n\n" for v in [b"a"] * 40 + [b"\xe1", b"\x80\x80"] * 30)
    events = decode(stream, size)
    assert [e.data_bytes for e in events[40:42]] == ["\ufffd".encode(), "\ufffd\ufffd".encode()]
    assert [e.data_bytes for e in events] == [e.data.encode() for e in events]


_DELTA = b"event: response.output_text.delta\ndata: "
_BREAKS = [
    b"event: response.output_text.done\ndata: x\n\n",
    _DELTA + b"a\ndata: b\n\n",
    _DELTA + b"a\r\n\r\n",
    _DELTA + b"a\rb\n\n",
    _DELTA + b"\xe1\n\n" + _DELTA + b"\x80\x80\n\n",
    _DELTA + b"\xff\n\n",
    b"data: plain\n\n",
    b"id: 9\n",
    b": ping\n\n",
    b"\n",
]


@pytest.mark.parametrize("seed", range(40))
def test_reads_of_kilobytes_inside_runs_decode_like_the_reference(seed: int) -> None:
    # Reads of 1-8 KiB inside long runs (a read that continues the run is split on its own,
    # without the pending block copied in front), broken by other shapes, a CR inside a value,
    # invalid UTF-8 (also a sequence cut over two values) or comments; chunks cut anywhere and
    # fed as bytes or bytearray. The data bytes handed out are valid UTF-8.
    rng = random.Random(seed)
    alphabet = 'abc xyz"\\é€😀'
    parts = []
    for _ in range(rng.randint(2, 6)):
        for _ in range(rng.randint(30, 200)):
            text = "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
            parts.append(_DELTA + b'{"delta":"%s"}\n\n' % text.encode())
        parts.append(rng.choice(_BREAKS))
    stream = b"".join(parts)
    chunks = []
    pos = 0
    while pos < len(stream):
        size = rng.randint(1024, 8191)
        chunks.append(stream[pos : pos + size])
        pos += size
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    as_bytearray = seed % 2 == 1
    for chunk in chunks:
        events += decoder.feed(bytearray(chunk) if as_bytearray else chunk)
    assert [(e.event, e.data, e.id, e.retry) for e in events] == interpret(stream).events
    assert [e.data_bytes for e in events] == [e.data.encode() for e in events]


def test_a_decoder_that_failed_on_an_over_long_line_is_freed_without_the_cycle_collector() -> None:
    # Its error held the feed's frame (and the 16 MiB it had buffered) in a reference cycle:
    # with runcast's collector tuning, an upstream sending one endless line after another
    # grew the gateway by gigabytes.
    def fail_once() -> None:
        decoder = SSEDecoder(max_event_bytes=1 << 20)
        with pytest.raises(EventTooLarge):
            decoder.feed(b"data: ")
            for _ in range(40):
                decoder.feed(b"x" * 65536)
        with pytest.raises(LocalProtocolError, match="failed earlier"):
            decoder.feed(b"\n")

    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(3):
            fail_once()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 256 << 10, f"{held} bytes still held"
