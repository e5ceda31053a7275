"""Scrubbing the upstream key: whole bodies, heads, and bodies read chunk by chunk."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstream.scrub import MASK, SHOWN_FIRST_MAX, Scrubber, ScrubChain

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


UPSTREAM_KEY = b"sk-UPSTREAMSECRETKEY0123456789"


@pytest.mark.parametrize(
    "masked",
    [
        b"sk-UPS...6789",
        b"sk-****6789",
        b"sk-UPSTREAM\xe2\x80\xa66789",
        b"sk-UPSxxxxXX6789",
        b"sk-UPSTREAMSECRETKEY012345*6789",
        b"sk-" + b"*" * len(UPSTREAM_KEY) + b"6789",
    ],
)
def test_masked_forms_of_the_key_are_masked(masked: bytes) -> None:
    # An upstream 403 or 400 quoting the key shortened told its first and last characters.
    scrubber = Scrubber(UPSTREAM_KEY)
    body = b'{"message":"Incorrect API key provided: %s."}' % masked
    assert scrubber.body(body) == b'{"message":"Incorrect API key provided: ***."}'
    assert scrubber.text(masked.decode()) == "***"
    assert b"".join(feed_all(scrubber, [body[:45], body[45:50], body[50:]])) == scrubber.body(body)


def test_openais_own_masked_form_is_masked() -> None:
    key = b"sk-proj-" + b"A1b2C3d4" * 20 + b"cdef"
    scrubber = Scrubber(key)
    quoted = b"sk-proj-" + b"*" * 150 + b"...cdef"
    assert scrubber.body(b"provided: %s." % quoted) == b"provided: ***."
    headers = CIMultiDictProxy(CIMultiDict({"x-request-id": f"req {quoted.decode()}"}))
    assert list(scrubber.headers(headers).items()) == [("x-request-id", "req ***")]


@pytest.mark.parametrize(
    "text",
    [
        b"sk-abc...6789",  # another key's start
        b"sk...6789",  # fewer than 3 first characters
        b"sk-UPS...6788",  # another end
        b"sk-UPS6789",  # nothing masked between
        b"sk-UPS-6789",
        b"task-force: 6789",
        b"sk-" + b"*" * (len(UPSTREAM_KEY) + 1) + b"6789",  # a longer run than the key
    ],
)
def test_what_is_not_a_masked_form_of_the_key_passes(text: bytes) -> None:
    assert Scrubber(UPSTREAM_KEY).body(text) == text


def test_a_short_key_has_no_masked_forms() -> None:
    # "sk-" and 4 characters of a 7-character key would mask ordinary text.
    scrubber = Scrubber(b"sk-6789")
    assert scrubber.body(b"sk-...6789 sk-6789") == b"sk-...6789 ***"


def test_an_unfinished_masked_form_is_held_back_until_it_is_decided() -> None:
    stream = Scrubber(UPSTREAM_KEY).stream()
    assert stream.feed(b'data: {"m":"sk-UPS..') == b'data: {"m":"'
    assert stream.feed(b".67") == b""
    assert stream.feed(b'89"}\n\n') == b'***"}\n\n'
    assert stream.feed(b'data: {"m":"sk-UPS..') == b'data: {"m":"'
    assert stream.feed(b'.67!"}\n\n') == b'sk-UPS...67!"}\n\n'
    assert stream.feed(b"sk-UPS...6789") == b""  # a longer run could still follow
    assert stream.close() == MASK


LONG_KEY = b"sk-proj-" + b"x7Qm2" * 12
"""Longer than the head searched for as a whole: both ways of finding a held-back end run."""


def pieces(key: bytes) -> st.SearchStrategy[list[bytes]]:
    ellipsis = "\u2026".encode()
    parts = [key, key[:3], key[3:], key[:40], key[40:], b"s", b"sk-", b"x", b"\n\n", b"*"]
    # What masked forms are made of: prefixes, mask runs (a `...` cut in its UTF-8), the end.
    parts += [key[:9], key[-4:], key[-2:], b"...", b"X", ellipsis, ellipsis[:1], ellipsis[1:]]
    return st.lists(st.sampled_from(parts))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12))
@pytest.mark.parametrize(
    "key",
    [KEY, LONG_KEY, UPSTREAM_KEY, b"sk-6789"],
    ids=["short-key", "long-key", "upstream-key", "no-masked-forms"],
)
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


OTHER_KEY = b"a1b2c3d4e5f60718293a4b5c6d7e8f90"
"""A caller's key passed on, scrubbed after runcast's own (``ScrubChain``)."""


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
)
def test_a_chain_scrubs_each_key_however_the_body_is_chunked(
    data: st.DataObject, cuts: list[int]
) -> None:
    first, second = Scrubber(UPSTREAM_KEY), Scrubber(OTHER_KEY)
    parts = data.draw(pieces(UPSTREAM_KEY)) + data.draw(pieces(OTHER_KEY))
    body = b"".join(data.draw(st.permutations(parts)))
    bounds = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    chain = ScrubChain([first, second])
    out = b"".join(chain.feed(body[a:b]) for a, b in itertools.pairwise(bounds)) + chain.close()
    assert out == second.body(first.body(body))
    assert UPSTREAM_KEY not in out and OTHER_KEY not in out


def test_a_chain_scrubs_heads_with_each_key() -> None:
    chain = ScrubChain([Scrubber(UPSTREAM_KEY), Scrubber(OTHER_KEY)])
    head = CIMultiDictProxy(
        CIMultiDict({"x-a": UPSTREAM_KEY.decode(), "x-b": f"k {OTHER_KEY.decode()}"})
    )
    assert list(chain.headers(head).items()) == [("x-a", "***"), ("x-b", "k ***")]
    assert chain.text(f"{OTHER_KEY.decode()} / {UPSTREAM_KEY.decode()}") == "*** / ***"


@pytest.mark.parametrize("key", [b"sk-6789", b"ab"])
def test_a_short_keys_longest_start_is_held_back(key: bytes) -> None:
    stream = Scrubber(key).stream()
    assert stream.feed(b"data: " + key[:-1]) == b"data: "
    assert stream.feed(key[-1:] + b"\n\n") == MASK + b"\n\n"


def test_a_long_key_is_scrubbed_without_a_pattern_the_square_of_its_size() -> None:
    # A 4,000-character token (an Entra ID JWT as the bearer): every prefix of the key was an
    # alternative of the masked forms' pattern, 14.7 s to compile and some 130 MiB. Masked forms
    # showing up to SHOWN_FIRST_MAX first characters are still masked.
    key = b"eyJ" + bytes(ord("a") + i % 26 for i in range(3997))
    started = time.perf_counter()
    scrubber = Scrubber(key)
    body = b"key " + key[:SHOWN_FIRST_MAX] + b"***" + key[-4:] + b" and " + key + b" end"
    assert scrubber.body(body) == b"key *** and *** end"
    assert time.perf_counter() - started < 2
    assert b"".join(feed_all(scrubber, [body[:100], body[100:]])) == b"key *** and *** end"
