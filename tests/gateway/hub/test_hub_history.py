"""A channel's bounded history: numbering, eviction by events and by bytes, ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.hub import HubEvent
from gateway.hub.history import ENTRY_OVERHEAD, History


def ev(i: int, size: int = 1) -> HubEvent:
    return HubEvent("e", str(i).encode().ljust(size, b" "))


def test_empty_history() -> None:
    h = History(max_events=10, max_bytes=1000)
    assert (h.first_seq, h.last_seq, len(h), h.nbytes) == (1, 0, 0, 0)
    assert h.holds_after(0)
    assert not h.holds_after(1)
    assert list(h.after(0)) == []


def test_evicts_by_event_count() -> None:
    h = History(max_events=3, max_bytes=10**6)
    for i in range(1, 6):
        h.append(ev(i))
    assert (h.first_seq, h.last_seq, len(h)) == (3, 5, 3)
    assert [(s, e.data) for s, e in h.after(0)] == [(3, b"3"), (4, b"4"), (5, b"5")]
    assert [s for s, _ in h.after(4)] == [5]
    assert h.holds_after(2) and h.holds_after(5)
    assert not h.holds_after(1) and not h.holds_after(6)


def test_evicts_by_bytes() -> None:
    cost = len("e") + 100 + ENTRY_OVERHEAD
    h = History(max_events=1000, max_bytes=cost * 2)
    for i in range(1, 4):
        h.append(ev(i, 100))
    assert (h.first_seq, h.last_seq, h.nbytes) == (2, 3, cost * 2)


def test_an_event_larger_than_the_limit_is_numbered_but_not_kept() -> None:
    h = History(max_events=10, max_bytes=50)
    h.append(ev(1, 500))
    assert (h.first_seq, h.last_seq, len(h), h.nbytes) == (2, 1, 0, 0)
    assert h.holds_after(1)


def test_zero_limits_keep_numbering() -> None:
    h = History(max_events=0, max_bytes=0)
    for i in range(1, 4):
        h.append(ev(i))
    assert h.last_seq == 3
    with pytest.raises(ValueError):
        History(max_events=-1, max_bytes=0)


def test_clear_keeps_numbering() -> None:
    h = History(max_events=10, max_bytes=10**6)
    h.append(ev(1))
    h.append(ev(2))
    h.clear()
    assert (h.first_seq, h.last_seq, len(h), h.nbytes) == (3, 2, 0, 0)


@given(
    st.lists(st.integers(min_value=0, max_value=300), max_size=60),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=3000),
)
def test_holds_the_newest_suffix_within_both_limits(
    sizes: list[int], max_events: int, max_bytes: int
) -> None:
    h = History(max_events=max_events, max_bytes=max_bytes)
    for size in sizes:
        h.append(HubEvent("e", b"x" * size))
    assert h.last_seq == len(sizes)
    held = list(h.after(0))
    assert [s for s, _ in held] == list(range(h.first_seq, h.last_seq + 1))
    assert [len(e.data) for _, e in held] == sizes[h.first_seq - 1 :]
    assert len(held) <= max_events
    assert h.nbytes == sum(History.cost(e) for _, e in held) <= max_bytes
    if h.first_seq > 1:
        # The next older event would not have fitted.
        older = History.cost(HubEvent("e", b"x" * sizes[h.first_seq - 2]))
        assert len(held) + 1 > max_events or h.nbytes + older > max_bytes
