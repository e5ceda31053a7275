"""Retry decisions: Retry-After parsing and the safe-retry table."""

from __future__ import annotations

import email.utils
import random

import pytest

from gateway.upstream import RetryPolicy, retry_after
from gateway.upstream.settings import UpstreamSettings

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "bad", "retry-after": "9"}, 9.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers, now=NOW) == expected


def policy() -> RetryPolicy:
    settings = UpstreamSettings(base_url="http://h/v1", backoff_base=1.0, backoff_max=4.0)
    return RetryPolicy(settings, rng=random.Random(7))


def test_backoff_grows_is_capped_and_jittered_down() -> None:
    p = policy()
    for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (6, 4.0)]:
        for _ in range(20):
            assert 0.75 * full <= p.backoff(attempt) <= full


@pytest.mark.parametrize(
    ("method", "status", "headers", "retried"),
    [
        ("POST", 429, {"retry-after": "1"}, True),
        ("POST", 503, {"retry-after-ms": "10"}, True),
        ("POST", 429, {}, False),
        ("POST", 500, {"retry-after": "1"}, False),
        ("POST", 502, {}, False),
        ("POST", 429, {"retry-after": "61"}, False),
        ("POST", 429, {"retry-after": "1", "x-should-retry": "false"}, False),
        ("GET", 429, {}, True),
        ("GET", 500, {}, True),
        ("GET", 504, {}, True),
        ("GET", 408, {}, True),
        ("GET", 404, {}, False),
        ("GET", 400, {}, False),
        ("DELETE", 500, {}, False),
        ("GET", 503, {"x-should-retry": "False"}, False),
    ],
)
def test_status_table(method: str, status: int, headers: dict[str, str], retried: bool) -> None:
    assert (policy().after_status(method, status, headers, 0) is not None) is retried


def test_status_hint_is_the_delay() -> None:
    assert policy().after_status("POST", 429, {"retry-after": "2.5"}, 1) == 2.5


def test_connection_failures() -> None:
    p = policy()
    assert p.after_connect_error(0) > 0
    assert p.after_send_error("GET", 0) is not None
    assert p.after_send_error("POST", 0) is None
