"""``GET /metrics`` after real runs through a real gateway: counter values, bounded labels, the
subscribers by transport, resumes and history misses, tool calls, upstream errors, ``--metrics
off`` and a listener of its own."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
import runcast_e2e_tools
from http_helpers import (
    WAIT,
    Gateway,
    StartGateway,
    Subscriber,
    new_thread,
    read_sse,
    sdk_client,
    sse_subscribe,
    stream_run,
    ws_subscribe,
)
from prometheus_client.parser import text_string_to_metric_families
from tool_helpers import WEATHER, StartTools, tool_gateways

from gateway.tools import ToolRegistry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_asyncio.fixture
async def start_tools() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


@pytest.mark.asyncio
async def test_a_run_moves_the_counters(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(hub={"max_history_events": 4})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    channel = f"{gateway.url}/streams/threads/{thread_id}"
    sse_response, sse = await sse_subscribe(session, channel)
    ws, websocket = await ws_subscribe(session, channel)
    async with asyncio.timeout(WAIT):
        while gateway.connections.count() < 2:
            await asyncio.sleep(0.01)
    during = await scrape(session, gateway.url)
    assert value(during, "runcast_subscribers_active", transport="sse") == 1
    assert value(during, "runcast_subscribers_active", transport="websocket") == 1

    await stream_run(sdk, assistant_id, thread_id)
    await sdk.close()
    async with asyncio.timeout(WAIT):
        heard = await sse
        await websocket
    sse_response.close()
    await ws.close()
    upstream = [e for e in heard.events if not e.event.startswith("runcast.")]

    # A resume from a seq long gone from a 4-event history: a history miss.
    runs = await gateway.relays.recent_runs(1)
    run_channel = f"{gateway.url}/streams/runs/{runs[0][0]}"
    async with session.get(run_channel, params={"since": "1"}) as response:
        assert response.status == 200
        lost = await read_sse(response, Subscriber())
    assert lost.names[0] == "runcast.history_lost"
    async with asyncio.timeout(WAIT):
        while gateway.connections.count():
            await asyncio.sleep(0.01)

    after = await scrape(session, gateway.url)
    assert value(after, "runcast_runs_started_total", protocol="assistants") == 1
    finished = value(
        after, "runcast_runs_finished_total", protocol="assistants", outcome="completed"
    )
    assert finished == 1
    assert value(after, "runcast_runs_active") == 0
    assert value(after, "runcast_events_in_total", protocol="assistants") == len(upstream)
    assert value(after, "runcast_events_out_total", protocol="sse") >= len(heard.events)
    assert value(after, "runcast_events_out_total", protocol="websocket") >= len(upstream)
    assert value(after, "runcast_time_to_first_event_seconds_count", protocol="assistants") == 1
    assert (
        value(after, "runcast_upstream_stream_duration_seconds_count", protocol="assistants") == 1
    )
    assert value(after, "runcast_delivery_lag_seconds_count") >= 1
    assert value(after, "runcast_resumes_total") == 1
    assert value(after, "runcast_history_misses_total") == 1
    assert value(after, "runcast_subscribers_active", transport="sse") == 0
    assert value(after, "runcast_subscriptions_ended_total", reason="disconnected") >= 1
    # The late subscriber found its run over: its replay counts out, and its end as "ended".
    assert value(after, "runcast_subscriptions_ended_total", reason="ended") >= 1
    assert value(after, "runcast_subscriptions_ended_total", reason="lagged") == 0
    assert value(after, "runcast_memory_budget_used_bytes") > 0
    assert value(after, "runcast_memory_budget_limit_bytes") == 256 * 1024 * 1024
    assert value(after, "runcast_broker_round_trips_total") == 0
    gc.collect()  # the collector is process-wide: this full collection's pause is the app's too
    collected = await scrape(session, gateway.url)
    full = value(after, "runcast_gc_pause_seconds_count", generation="2")
    assert value(collected, "runcast_gc_pause_seconds_count", generation="2") >= full + 1
    # Bounded cardinality: no run, thread or response id anywhere in a label.
    for _, labels in after:
        for _, label in labels:
            assert not label.startswith(("run_", "thread_", "resp_")), label
    assert all(name.startswith("runcast_") for name, _ in after)


@pytest.mark.asyncio
async def test_upstream_errors_by_kind_and_the_run_outcome(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(recovery_timeout=0.0)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    with pytest.raises(Exception):  # noqa: B017 (the SDK raises on runcast.upstream_error)
        await stream_run(sdk, assistant_id, thread_id, "drop")
    await sdk.close()
    async with asyncio.timeout(WAIT):
        while gateway.relays.statistics().active:
            await asyncio.sleep(0.01)
    samples = await scrape(session, gateway.url)
    errors = {
        dict(labels)["kind"]: v
        for (name, labels), v in samples.items()
        if name == "runcast_upstream_errors_total"
    }
    assert sum(errors.values()) == 1 and set(errors) <= {"stream_truncated", "connection_lost"}
    assert (
        value(
            samples, "runcast_runs_finished_total", protocol="assistants", outcome="upstream_error"
        )
        == 1
    )


@pytest.mark.asyncio
async def test_tool_calls_by_outcome_with_duration(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    tg = await start_tools(ToolRegistry.from_module(runcast_e2e_tools))
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    await stream_run(sdk, assistant_id, thread_id, "tool_call")
    await sdk.close()
    samples = await scrape(session, tg.gateway.url)
    assert value(samples, "runcast_tool_calls_total", outcome="completed") == 1
    assert value(samples, "runcast_tool_call_duration_seconds_count", outcome="completed") == 1
    assert (
        value(samples, "runcast_runs_finished_total", protocol="assistants", outcome="completed")
        == 1
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_metrics_off_and_on_a_listener_of_their_own(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    off: Gateway = await start_gateway(metrics=False)
    async with session.get(f"{off.url}/metrics") as response:
        assert response.status == 404
    port = _free_port()
    own = await start_gateway(metrics_address=f"127.0.0.1:{port}")
    async with session.get(f"{own.url}/metrics") as response:
        assert response.status == 404
    samples = await scrape(session, f"http://127.0.0.1:{port}")
    assert value(samples, "runcast_runs_active") == 0
    # Bound to loopback, it answers loopback names only, as the main listener does: a page
    # whose name was rebound to 127.0.0.1 read the metrics there.
    rebound = {"Host": f"evil.example:{port}"}
    async with session.get(f"http://127.0.0.1:{port}/metrics", headers=rebound) as response:
        assert response.status == 403


def test_two_apps_never_share_a_registry() -> None:
    from gateway.metrics import Metrics

    first, second = Metrics(), Metrics()
    first.tool_call("completed", 0.1)
    assert b'runcast_tool_calls_total{outcome="completed"} 1.0' in first.exposition()
    assert b"runcast_tool_calls_total{" not in second.exposition()
