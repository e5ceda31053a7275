"""The lag policy shared by subscriber sinks and the creator's feed."""

from __future__ import annotations

import pytest

from gateway.hub import LagPolicy


def test_small_events_fit_while_the_backlog_is_within_the_limit() -> None:
    policy = LagPolicy(100)
    assert policy.admits(0, 10)
    assert policy.admits(100, 10)  # within the limit: the next event always fits
    assert not policy.admits(101, 10)


def test_one_large_event_is_not_charged_to_the_events_after_it() -> None:
    policy = LagPolicy(100)
    assert policy.admits(60, 5_000)  # far larger than the limit, into a backlog within it
    # The same burst goes on while it drains: only what is behind it counts.
    assert policy.admits(5_060, 10)
    assert policy.admits(5_090, 10)
    assert policy.within(5_100)
    assert not policy.admits(5_101, 10)  # 101 bytes more than the large event: truly behind


def test_the_room_lapses_once_the_reader_has_caught_up() -> None:
    policy = LagPolicy(100)
    assert policy.admits(0, 5_000)
    assert policy.within(4_000)
    assert policy.within(50)  # caught up
    assert not policy.admits(150, 10)
    assert not LagPolicy(100).within(101)


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        LagPolicy(-1)
