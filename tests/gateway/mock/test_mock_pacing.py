"""Paced streams keep a fixed schedule: a delta written late is not followed by a longer gap."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from mock_helpers import HEADERS, MockAPI, StartMock

from gateway.mock.pacing import Cadence

DELTAS = 10
DELAY_S = 0.05
BLOCK_S = 0.25


def test_a_late_delta_is_followed_by_the_next_on_time_not_a_full_gap_later() -> None:
    now = [100.0]
    cadence = Cadence(0.05, clock=lambda: now[0])
    assert cadence.wait() == pytest.approx(0.05)  # due at 100.05
    now[0] = 100.17  # woken 120 ms late: the next two are already due
    assert cadence.wait() == 0.0  # 100.10
    assert cadence.wait() == 0.0  # 100.15
    assert cadence.wait() == pytest.approx(0.03)  # 100.20: back on the schedule
    cadence.restart()  # a new stream of the same run starts its own schedule
    assert cadence.wait() == pytest.approx(0.05)


async def _stream_seconds(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    """Seconds from the stream's first bytes to its end, the loop blocked for BLOCK_S (server
    and client share it) once the first bytes are in."""
    async with session.post(url, json=body, headers=HEADERS) as resp:
        assert resp.status == 200
        chunks = resp.content.iter_any()
        await anext(chunks)
        first = time.perf_counter()
        time.sleep(BLOCK_S)  # the whole process stalls, as a busy host would
        async for _ in chunks:
            pass
        return time.perf_counter() - first


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["assistants", "responses", "chat"])
async def test_a_stall_mid_stream_does_not_push_the_rest_of_it_back(
    start_mock: StartMock, session: aiohttp.ClientSession, protocol: str
) -> None:
    # DELTAS deltas DELAY_S apart: the schedule takes (DELTAS - 1) * DELAY_S = 0.45 s whatever
    # stalls inside it; deltas that came late are followed by the next ones on time, so the
    # stall does not add its 0.25 s to the stream, as a sleep after each delta would.
    server = await start_mock(deltas=DELTAS, delay_ms=DELAY_S * 1000)
    api = MockAPI(session, server.base_url)
    if protocol == "assistants":
        assistant = await api.assistant()
        thread = await api.thread()
        url = f"{server.base_url}/threads/{thread['id']}/runs"
        body: dict[str, Any] = {"assistant_id": assistant["id"], "stream": True}
    else:
        path = "/responses" if protocol == "responses" else "/chat/completions"
        url = server.base_url + path
        body = {"model": "gpt-4o", "stream": True}
        if protocol == "responses":
            body["input"] = "Hello"
        else:
            body["messages"] = [{"role": "user", "content": "Hello"}]
    seconds = await _stream_seconds(session, url, body)
    scheduled = (DELTAS - 1) * DELAY_S
    assert scheduled - 0.05 < seconds < scheduled + BLOCK_S * 0.6
