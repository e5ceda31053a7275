"""Wire encoding: SSE frames read back by the project's decoder, chunks, WebSocket frames."""

from __future__ import annotations

import json
import re

import pytest
from hub_helpers import dechunk
from hypothesis import given
from hypothesis import strategies as st

from gateway.hub import FrameFormat, HubEvent, frames
from parsers.sse import SSEDecoder, encode_sse


def decode(data: bytes) -> list:
    decoder = SSEDecoder()
    events = decoder.feed(data)
    events += decoder.close()
    assert not decoder.truncated
    return events


def parse_ws(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80, "FIN set"
        assert not b1 & 0x80, "server frames are unmasked"
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        out.append((b0 & 0x0F, data[pos : pos + n]))
        pos += n
    assert pos == len(data)
    return out


def test_sse_frame_has_id_event_and_data() -> None:
    frame = frames.sse_frame(7, "thread.run.created", b'{"id":"run_1"}', "ep1")
    assert frame == b'event: thread.run.created\nid: ep1-7\ndata: {"id":"run_1"}\n\n'
    assert frame == encode_sse(b'{"id":"run_1"}', event="thread.run.created", id="ep1-7")
    (event,) = decode(frame)
    assert (event.id, event.event, event.data_bytes) == (
        "ep1-7",
        "thread.run.created",
        b'{"id":"run_1"}',
    )


def test_notice_without_seq_keeps_last_event_id() -> None:
    events = decode(frames.sse_frame(3, "a", b"1") + frames.sse_frame(None, "runcast.x", b"{}"))
    assert [e.id for e in events] == ["3", "3"]


def test_done_event_is_not_json_but_encodes() -> None:
    assert frames.sse_frame(9, "done", b"[DONE]").endswith(b"data: [DONE]\n\n")
    payload = frames.ws_event_payload(9, "done", b"[DONE]", "ep")
    assert json.loads(payload) == {"epoch": "ep", "seq": 9, "event": "done", "data": "[DONE]"}


@pytest.mark.parametrize("data", [b"a\nb", b"a\r\nb", b"a\rb", b"\n", b"x\n\ny\r\n", b" lead"])
def test_multiline_data_round_trips(data: bytes) -> None:
    (event,) = decode(frames.sse_frame(1, "m", data))
    assert event.data_bytes == re.sub(rb"\r\n|\r", b"\n", data)


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        min_size=1,
    ),
)
def test_any_text_round_trips_through_the_decoder(text: str, name: str) -> None:
    data = text.encode()
    (event,) = decode(frames.sse_frame(42, name, data))
    assert event.event == name
    assert event.id == "42"
    assert event.data_bytes == re.sub(rb"\r\n|\r", b"\n", data)


def test_event_names_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        frames.sse_frame(1, "a\nb", b"{}")
    with pytest.raises(ValueError, match="CR or LF"):
        frames.ws_event_payload(1, "a\rb", b"{}")


def test_chunked_batch_is_one_chunk_holding_the_frames() -> None:
    events = [HubEvent("a", b'{"n":1}'), HubEvent("b", b'{"n":2}')]
    wire = frames.encode_batch(FrameFormat.SSE_CHUNKED, "e", 5, events)
    body, terminated = dechunk(wire + b"0\r\n\r\n")
    assert terminated
    assert body == frames.encode_batch(FrameFormat.SSE, "e", 5, events)
    assert [(e.id, e.event) for e in decode(body)] == [("e-5", "a"), ("e-6", "b")]
    with pytest.raises(ValueError):
        frames.http_chunk(b"")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_ws_frame_length_encodings(size: int) -> None:
    payload = b"x" * size
    ((opcode, got),) = parse_ws(frames.ws_frame(payload))
    assert opcode == 1
    assert got == payload


def test_ws_batch_splices_data_unchanged() -> None:
    odd = b'{ "a" : [1, 2.50, "\\u00e9"],\t"b":null }'
    events = [HubEvent("x", odd), HubEvent("y", b"7")]
    wire = frames.encode_batch(FrameFormat.WEBSOCKET, "e", 3, events)
    (op1, p1), (op2, p2) = parse_ws(wire)
    assert op1 == op2 == 1
    assert p1 == b'{"epoch":"e","seq":3,"event":"x","data":' + odd + b"}"
    assert json.loads(p1)["data"] == {"a": [1, 2.5, "\u00e9"], "b": None}
    assert json.loads(p2) == {"epoch": "e", "seq": 4, "event": "y", "data": 7}


def test_invalid_json_data_becomes_a_json_string() -> None:
    payload = frames.ws_event_payload(None, "weird", b'{"unterminated": ')
    assert json.loads(payload) == {
        "epoch": None,
        "seq": None,
        "event": "weird",
        "data": '{"unterminated": ',
    }


def test_heartbeat_and_close_frames() -> None:
    assert frames.heartbeat_frame(FrameFormat.SSE) == b": ping\n\n"
    assert decode(frames.heartbeat_frame(FrameFormat.SSE)) == []
    assert dechunk(frames.heartbeat_frame(FrameFormat.SSE_CHUNKED))[0] == b": ping\n\n"
    assert parse_ws(frames.heartbeat_frame(FrameFormat.WEBSOCKET)) == [(0x9, b"")]
    assert parse_ws(frames.ws_close_frame(1000, "bye")) == [(0x8, b"\x03\xe8bye")]


def test_encode_items_empty_is_empty_in_every_format() -> None:
    for fmt in FrameFormat:
        assert frames.encode_items(fmt, []) == b""
