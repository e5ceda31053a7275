"""Upstream failures mid-stream: subscribers are told, the run is recovered, runcast stays up."""

from __future__ import annotations

import aiohttp
import pytest
from http_helpers import (
    RecordingHandler,
    StartGateway,
    closed_port,
    new_thread,
    sdk_client,
    sse_subscribe,
    stream_run,
    subscription_ended,
)

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.mark.asyncio
async def test_upstream_drop_reaches_subscribers_and_run_is_recovered(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 20, "delay_ms": 2})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    handler = RecordingHandler()
    # Recovered: the creator's SDK stream ends normally (test_http_recovery.py has the details).
    await stream_run(sdk, assistant_id, thread_id, "drop", handler=handler)
    sub = await subscription_ended(response, subscriber)

    names = sub.names
    error = sub.events[names.index("runcast.upstream_error")].json()
    assert error["reason"] == "stream_truncated"
    assert error["last_status"] == "in_progress"
    assert error["run_id"] == handler.run_id and error["thread_id"] == thread_id
    assert error["error"]["type"] == "upstream_error"
    # The creator saw exactly what subscribers saw, but runcast's notices.
    upto = names.index("runcast.upstream_error")
    assert [(e.event, e.json()) for e in sub.events[:upto]] == handler.seen[:upto]
    assert [(e.event, e.json()) for e in sub.events[upto + 2 : -1]] == handler.seen[upto:]
    # Recovery: the run went on upstream; what was missed and its final state are published.
    assert names[upto + 1 :] == [
        "runcast.recovered",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]
    assert sub.seqs == list(range(1, len(names) + 1))
    async with session.get(f"{gateway.url}/streams/runs/{handler.run_id}/snapshot") as snap:
        assert (await snap.json())["snapshot"]["status"] == "completed"

    # The process is healthy and the next run on the same thread streams normally.
    async with session.get(f"{gateway.url}/healthz") as health:
        assert (await health.json())["status"] == "ok"
    again = await stream_run(sdk, assistant_id, thread_id)
    assert again.seen[-1][0] == "thread.run.completed"
    await sdk.close()


@pytest.mark.asyncio
async def test_error_event_passes_through_and_segment_ends_with_done(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    await stream_run(sdk, assistant_id, thread_id, "error")
    await sdk.close()
    sub = await subscription_ended(response, subscriber)
    assert "error" in sub.names
    assert "runcast.upstream_error" not in sub.names
    assert sub.names[-1] == "done"


@pytest.mark.asyncio
async def test_unreachable_upstream_is_a_502(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(upstream_url=f"http://127.0.0.1:{closed_port()}/v1")
    async with session.post(
        f"{gateway.v1}/threads/thread_a/runs",
        json={"assistant_id": "asst_a", "stream": True},
        headers={"Authorization": "Bearer sk-x"},
    ) as response:
        assert response.status == 502
        assert (await response.json())["error"]["code"] == "upstream_unavailable"
    async with session.get(
        f"{gateway.v1}/assistants", headers={"Authorization": "Bearer sk-x"}
    ) as response:
        assert response.status == 502


_CALLS = [
    ("GET", "/models", None),
    ("POST", "/chat/completions", {"model": "m", "messages": [], "stream": True}),
    ("POST", "/responses", {"model": "m", "input": "hi", "stream": True}),
    ("POST", "/threads/thread_1/runs", {"assistant_id": "asst_1", "stream": True}),
]


@pytest.mark.asyncio
async def test_an_unreachable_upstream_is_named_by_the_fault_not_by_its_address(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    # The message was aiohttp's own text, "cannot connect to upstream http://10.0.3.7:8000:
    # Cannot connect to host 10.0.3.7:8000 ...": an internal address told to every caller.
    port = closed_port()
    gateway = await start_gateway(upstream_url=f"http://127.0.0.1:{port}/v1")
    for method, path, body in _CALLS:
        async with session.request(method, f"{gateway.v1}{path}", json=body) as response:
            assert response.status == 502, path
            error = (await response.json())["error"]
        assert error["code"] == "upstream_unavailable", path
        assert (
            error["message"]
            == "upstream failed: cannot connect to the upstream: Connection refused"
        )
        assert str(port) not in error["message"]
