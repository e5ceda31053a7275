"""UpstreamSettings: defaults, strict decoding, validation, and a repr without the key."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.upstream import UpstreamSettings


def test_defaults_fit_streams() -> None:
    s = UpstreamSettings(base_url="http://127.0.0.1:8001/v1")
    assert (s.connect_timeout, s.first_byte_timeout, s.idle_timeout) == (10.0, 60.0, 120.0)
    assert s.answer_timeout == 600.0  # the openai SDK's own timeout
    assert s.max_retries == 2
    assert s.api_key is None and s.max_event_bytes is None


def test_built_from_a_mapping_strictly() -> None:
    s = msgspec.convert({"base_url": "https://api.example/v1", "api_key": "sk-1"}, UpstreamSettings)
    assert s.api_key == "sk-1"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"base_url": "http://h/v1", "idle_timeoutt": 1}, UpstreamSettings)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"base_url": "http://h/v1", "max_retries": "2"}, UpstreamSettings)


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": "ftp://h/v1"},
        {"base_url": "127.0.0.1:8001"},
        {"idle_timeout": 0},
        {"first_byte_timeout": -1},
        {"answer_timeout": 0},
        {"answer_timeout": float("nan")},
        {"max_retries": -1},
        {"backoff_max": -0.1},
        {"max_event_bytes": 0},
    ],
)
def test_impossible_values_are_config_errors(overrides: dict[str, object]) -> None:
    values: dict[str, object] = {"base_url": "http://h/v1", **overrides}
    with pytest.raises(ConfigError):
        UpstreamSettings(**values)  # type: ignore[arg-type]


def test_repr_hides_the_urls_query_values() -> None:
    # The URL was shown whole: a function key's ?code= in every repr.
    s = UpstreamSettings(base_url="https://fn.example/api/v1?code=FUNCKEY0123456789SECRET&v=2")
    assert "FUNCKEY0123456789SECRET" not in repr(s)
    assert "https://fn.example/api/v1?code=***&v=***" in repr(s)


def test_repr_hides_the_key() -> None:
    s = UpstreamSettings(base_url="http://h/v1", api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(s)
    assert "***" in repr(s)
