"""EventLog: numbered frames, retained or trimmed, the creator's cut, reader back-pressure."""

from __future__ import annotations

import asyncio

import pytest

from gateway.mock.eventlog import EventLog


def fill(log: EventLog, count: int) -> None:
    for _ in range(count):
        log.append(b"%d;" % log.next_seq)


@pytest.mark.asyncio
async def test_retained_log_replays_from_any_point() -> None:
    log = EventLog(retain=True, max_lag=2)
    fill(log, 5)
    first = log.attach(0, creator=True)
    assert log.take(first) == (b"0;1;2;3;4;", None)
    log.detach(first)
    late = log.attach(3, creator=False)
    fill(log, 1)
    log.close(b"[DONE]")
    assert log.take(late) == (b"3;4;5;[DONE]", "end")
    assert log.take(log.attach(0, creator=False))[0].startswith(b"0;1;")


@pytest.mark.asyncio
async def test_foreground_log_drops_what_was_read_and_skips_when_unread() -> None:
    log = EventLog(retain=False, max_lag=2)
    assert not log.wanted
    log.skip()
    reader = log.attach(0, creator=True)
    assert log.wanted and reader.cursor == 1
    fill(log, 3)
    assert log.take(reader) == (b"1;2;3;", None)
    fill(log, 1)
    assert log.take(reader) == (b"4;", None)  # earlier frames are gone, numbering goes on
    log.detach(reader)
    assert not log.wanted


@pytest.mark.asyncio
async def test_cut_applies_to_the_creator_only() -> None:
    log = EventLog(retain=True, max_lag=2)
    creator = log.attach(0, creator=True)
    other = log.attach(0, creator=False)
    fill(log, 2)
    log.cut()
    fill(log, 2)
    assert log.take(creator) == (b"0;1;", "cut")
    assert log.take(other) == (b"0;1;2;3;", None)


@pytest.mark.asyncio
async def test_drain_waits_for_a_lagging_foreground_reader() -> None:
    log = EventLog(retain=False, max_lag=2)
    reader = log.attach(0, creator=True)
    fill(log, 5)
    drained = asyncio.ensure_future(log.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    log.take(reader)
    await asyncio.wait_for(drained, 1)


@pytest.mark.asyncio
async def test_wait_closed_and_wake() -> None:
    log = EventLog(retain=True, max_lag=2)
    waiter = asyncio.ensure_future(log.wait_closed())
    await asyncio.sleep(0)
    log.notify()
    await asyncio.sleep(0)
    assert not waiter.done()
    log.close()
    await asyncio.wait_for(waiter, 1)


@pytest.mark.asyncio
async def test_release_only_when_closed_and_unread() -> None:
    log = EventLog(retain=True, max_lag=2)
    fill(log, 3)
    assert not log.release() and log.held == 3  # still open
    reader = log.attach(0, creator=False)
    log.close()
    assert not log.release()  # still read
    log.detach(reader)
    assert log.release() and log.held == 0 and log.next_seq == 3
