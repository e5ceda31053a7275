"""Scrubbing the upstream key: whole bodies, heads, and bodies read chunk by chunk."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstream.scrub import MASK, Scrubber

KEY = b"sk-proj-0123456789"


def feed_all(scrubber: Scrubber, chunks: list[bytes]) -> list[bytes]:
    stream = scrubber.stream()
    return [stream.feed(chunk) for chunk in chunks] + [stream.close()]


def test_whole_body_and_text() -> None:
    scrubber = Scrubber(KEY)
    assert scrubber.body(b'{"m":"bad key %s, %s"}' % (KEY, KEY)) == b'{"m":"bad key ***, ***"}'
    body = b"nothing to see"
    assert scrubber.body(body) is body
    assert scrubber.text(f"key={KEY.decode()}!") == "key=***!"


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty key"):
        Scrubber(b"")


def test_headers_copied_only_when_they_hold_the_key() -> None:
    scrubber = Scrubber(KEY)
    clean = CIMultiDictProxy(CIMultiDict({"x-request-id": "req_1"}))
    assert scrubber.headers(clean) is clean
    dirty = CIMultiDictProxy(
        CIMultiDict(
            [
                ("x-request-id", f"req-{KEY.decode()}"),
                (f"x-ratelimit-{KEY.decode()}", "1"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ]
        )
    )
    scrubbed = scrubber.headers(dirty)
    assert list(scrubbed.items()) == [
        ("x-request-id", "req-***"),
        ("x-ratelimit-***", "1"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_key_split_across_chunks_is_masked() -> None:
    scrubber = Scrubber(KEY)
    out = feed_all(scrubber, [b'data: {"m":"' + KEY[:5], KEY[5:12], KEY[12:] + b'"}\n\n'])
    assert out == [b'data: {"m":"', b"", b'***"}\n\n', b""]


def test_an_event_end_is_never_held_back() -> None:
    # Only an end that could start the key waits for more bytes: an SSE event goes out at once.
    stream = Scrubber(KEY).stream()
    assert stream.feed(b'data: {"text":"sk"}\n\n') == b'data: {"text":"sk"}\n\n'
    assert stream.feed(b'data: {"text":"s') == b'data: {"text":"'
    assert stream.feed(b'ky"}\n\n') == b'sky"}\n\n'


def test_an_unfinished_key_at_the_end_is_given_back() -> None:
    out = feed_all(Scrubber(KEY), [b"tail " + KEY[:-1]])
    assert b"".join(out) == b"tail " + KEY[:-1]


LONG_KEY = b"sk-proj-" + b"x7Qm2" * 12
"""Longer than the head searched for as a whole: both ways of finding a held-back end run."""


def pieces(key: bytes) -> st.SearchStrategy[list[bytes]]:
    parts = [key, key[:3], key[3:], key[:40], key[40:], b"s", b"sk-", b"x", b"\n\n", b"*"]
    return st.lists(st.sampled_from(parts))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12))
@pytest.mark.parametrize("key", [KEY, LONG_KEY], ids=["short-key", "long-key"])
def test_chunking_never_changes_the_output(
    key: bytes, data: st.DataObject, cuts: list[int]
) -> None:
    scrubber = Scrubber(key)
    body = b"".join(data.draw(pieces(key)))
    bounds = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    chunks = [body[a:b] for a, b in itertools.pairwise(bounds)]
    out = b"".join(feed_all(scrubber, chunks))
    assert out == scrubber.body(body)
    assert key not in out
    assert out.count(MASK) >= body.count(key)
