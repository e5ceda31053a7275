"""A run left at an unanswered ``requires_action``: its channels end once the upstream expires it
(spec §5), unless a submission through runcast continues it first."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from http_helpers import (
    StartGateway,
    new_thread,
    sdk_client,
    sse_subscribe,
    stream_run,
    submit_stream,
    subscription_ended,
)
from tool_helpers import WEATHER

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

GRACE = 0.2


def tail(names: list[str], start: str) -> list[str]:
    return names[names.index(start) :]


@pytest.mark.asyncio
async def test_expired_action_ends_the_run_for_its_subscribers(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        sim={"scenario": "tool_call", "expires_in": 0.5}, expiry_grace=GRACE
    )
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
        thread_resp, thread_sub = await sse_subscribe(
            session, f"{gateway.url}/streams/threads/{thread_id}", stop_at_done=2
        )
        # The creator's stream ends at the action, as the upstream's does.
        creator = await stream_run(sdk, assistant_id, thread_id)
        assert creator.seen[-1][0] == "thread.run.requires_action"
        run_id = creator.run_id
        assert run_id is not None
        run_resp, run_sub = await sse_subscribe(
            session, f"{gateway.url}/streams/runs/{run_id}?since=0", stop_at_done=3
        )
        thread_events = await subscription_ended(thread_resp, thread_sub)
        run_events = await subscription_ended(run_resp, run_sub)
    finally:
        await sdk.close()

    expected = ["thread.run.requires_action", "done", "thread.run.expired", "done"]
    for record in (thread_events, run_events):
        names = [name for name, _ in record.upstream]
        assert tail(names, "thread.run.requires_action") == expected
        expired = orjson.loads(record.upstream[-2][1])
        assert (expired["id"], expired["status"]) == (run_id, "expired")
        assert record.seqs == sorted(record.seqs)
    assert run_events.ended  # the run channel closed after the run's end
    assert gateway.relays.statistics().awaiting_expiry == 0


@pytest.mark.asyncio
async def test_submission_through_runcast_before_expiry_continues_the_run(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        sim={"scenario": "tool_call", "expires_in": 1.5}, expiry_grace=GRACE
    )
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
        thread_resp, thread_sub = await sse_subscribe(
            session, f"{gateway.url}/streams/threads/{thread_id}", stop_at_done=3
        )
        creator = await stream_run(sdk, assistant_id, thread_id)
        assert creator.run_id is not None
        assert gateway.relays.statistics().awaiting_expiry == 1
        run = await sdk.beta.threads.runs.retrieve(creator.run_id, thread_id=thread_id)
        assert run.status == "requires_action" and run.expires_at is not None
        run_resp, run_sub = await sse_subscribe(
            session, f"{gateway.url}/streams/runs/{run.id}?since=0", stop_at_done=3
        )
        continuation = await submit_stream(sdk, run, lambda call: "sunny")
        assert continuation.seen[-1][0] == "thread.run.completed"
        run_events = await subscription_ended(run_resp, run_sub)
        # Past the moment an expiry check would have read the run: nothing more is published.
        await asyncio.sleep(max(0.0, run.expires_at + GRACE + 0.3 - time.time()))
        assert not thread_sub.done()
        thread_sub.cancel()
        await asyncio.gather(thread_sub, return_exceptions=True)
        thread_resp.close()
    finally:
        await sdk.close()

    names = [name for name, _ in run_events.upstream]
    assert "thread.run.expired" not in names
    assert names.count("done") == 2
    assert names[-2:] == ["thread.run.completed", "done"]
    assert run_events.ended
    assert gateway.relays.statistics().awaiting_expiry == 0
