"""URL, query and JSON body building for upstream calls."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream.body import build_url, path_id, query_pairs, with_stream_flag


def test_bytes_without_stream_get_it_spliced_in_and_keep_every_other_byte() -> None:
    raw = b'  {\n "assistant_id" :"a", "x": 1.50, "e": "\\u00e9" }'
    out = with_stream_flag(raw, True)
    assert out == b'  {"stream":true,\n "assistant_id" :"a", "x": 1.50, "e": "\\u00e9" }'
    assert orjson.loads(out) == {"stream": True, "assistant_id": "a", "x": 1.5, "e": "é"}


@pytest.mark.parametrize("raw", [b"{}", b" { \n } "])
def test_empty_object_gets_a_valid_stream_flag(raw: bytes) -> None:
    assert orjson.loads(with_stream_flag(raw, True)) == {"stream": True}


def test_bytes_already_streaming_are_returned_as_is() -> None:
    raw = b'{"stream": true, "assistant_id":"a"}'
    assert with_stream_flag(raw, True) is raw


@pytest.mark.parametrize("value", [b"false", b"null", b"0"])
def test_a_different_stream_value_is_replaced(value: bytes) -> None:
    raw = b'{"assistant_id":"a","stream":' + value + b"}"
    assert orjson.loads(with_stream_flag(raw, True)) == {"assistant_id": "a", "stream": True}


def test_non_streamed_calls_drop_a_true_stream_flag_only() -> None:
    raw = b'{"assistant_id":"a","stream":false}'
    assert with_stream_flag(raw, False) is raw
    assert orjson.loads(with_stream_flag(b'{"stream":true,"a":1}', False)) == {"a": 1}
    assert orjson.loads(with_stream_flag({"stream": True, "a": 1}, False)) == {"a": 1}


def test_mappings_and_none() -> None:
    assert orjson.loads(with_stream_flag({"a": [1]}, True)) == {"a": [1], "stream": True}
    assert with_stream_flag(None, True) == b'{"stream":true}'
    assert with_stream_flag(None, False) == b"{}"


@pytest.mark.parametrize("raw", [b"[1]", b'"s"', b"{", b"", b"{} x"])
def test_bodies_that_are_not_a_json_object_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        with_stream_flag(raw, True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    obj=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k != "stream"), json_values, max_size=5
    ),
    pad=st.sampled_from([b"", b" ", b"\n\t ", b"\r\n"]),
    indent=st.booleans(),
)
def test_splice_property(obj: dict[str, object], pad: bytes, indent: bool) -> None:
    raw = pad + orjson.dumps(obj, option=orjson.OPT_INDENT_2 if indent else 0) + pad
    out = with_stream_flag(raw, True)
    assert orjson.loads(out) == {**obj, "stream": True}
    # Only the flag was added: removing it gives back the original bytes.
    assert out.replace(b'"stream":true,', b"", 1).replace(b'"stream":true', b"", 1) == raw


def test_build_url_keeps_encoded_paths_and_raw_queries() -> None:
    url = build_url("http://h:1/v1/", "/files/a%2Fb/content", "x=%5B1%5D&y=a+b")
    assert str(url) == "http://h:1/v1/files/a%2Fb/content?x=%5B1%5D&y=a+b"
    assert str(build_url("http://h:1/v1", "models", "")) == "http://h:1/v1/models"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (None, "http://h:1/v1/echo?code=SE%2FCRET&api-version=2024-10-21"),
        ("a=1&b=%5B", "http://h:1/v1/echo?code=SE%2FCRET&api-version=2024-10-21&a=1&b=%5B"),
        ({"limit": 2}, "http://h:1/v1/echo?code=SE%2FCRET&api-version=2024-10-21&limit=2"),
        ("code=mine", "http://h:1/v1/echo?code=SE%2FCRET&api-version=2024-10-21&code=mine"),
    ],
)
def test_a_query_in_the_base_url_goes_with_every_request(
    query: str | dict[str, int] | None, expected: str
) -> None:
    # The caller's path went into the base URL's query: GET /v1?code=SECRET/echo?a=1.
    for base in (
        "http://h:1/v1?code=SE%2FCRET&api-version=2024-10-21",
        "http://h:1/v1/?code=SE%2FCRET&api-version=2024-10-21#fragment",
    ):
        url = build_url(base, "/echo", query)
        assert str(url) == expected
        assert url.raw_path == "/v1/echo"


def test_mapping_queries() -> None:
    url = build_url(
        "http://h/v1", "/steps", {"limit": 5, "flag": True, "after": None, "include": ["a[*]"]}
    )
    assert url.raw_query_string == "limit=5&flag=true&include%5B%5D=a%5B%2A%5D"
    assert query_pairs({"include[]": ["x", "y"]}) == [("include[]", "x"), ("include[]", "y")]


def test_path_id_is_one_segment() -> None:
    assert path_id("thread_1") == "thread_1"
    assert path_id("a/../b?c") == "a%2F..%2Fb%3Fc"
    with pytest.raises(ValueError):
        path_id("")
