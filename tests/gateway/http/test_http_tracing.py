"""OpenTelemetry spans of a real run with runcast answering its tool call, collected by the SDK's
in-memory exporter: the creator's ``traceparent`` is the parent, and it reaches the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import runcast_e2e_tools
from aiohttp import web
from aiohttp.typedefs import Handler
from http_helpers import new_thread, sdk_client, stream_run
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tool_helpers import WEATHER, StartTools, tool_gateways

from gateway.tools import ToolRegistry

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process; later tests keep it, but this exporter
    # stops keeping spans when the module is done.
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.clear()
    memory.shutdown()


@pytest_asyncio.fixture
async def start_tools() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


@pytest.mark.asyncio
async def test_a_run_is_one_trace_from_the_creator_to_the_upstream(
    start_tools: StartTools, exporter: InMemorySpanExporter
) -> None:
    seen: list[str | None] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith(("/runs", "/submit_tool_outputs")):
            seen.append(request.headers.get("traceparent"))
        return await handler(request)

    tg = await start_tools(ToolRegistry.from_module(runcast_e2e_tools), sim_middleware=record)
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
    exporter.clear()
    traced = sdk.with_options(default_headers={"traceparent": PARENT})
    await stream_run(traced, assistant_id, thread_id, "tool_call")
    await sdk.close()

    spans = exporter.get_finished_spans()
    by_name: dict[str, list[object]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {"runcast.relay", "runcast.upstream", "runcast.tool_call", "runcast.submission"} <= set(
        by_name
    )
    assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in spans)
    (relay,) = by_name["runcast.relay"]
    assert format(relay.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert relay.attributes["runcast.outcome"] == "completed"
    assert relay.attributes["runcast.run_id"].startswith("run_")
    (tool,) = by_name["runcast.tool_call"]
    assert tool.attributes["runcast.tool"] == "get_weather"
    assert tool.parent.span_id == relay.context.span_id
    (submission,) = by_name["runcast.submission"]
    upstream_parents = {s.parent.span_id for s in by_name["runcast.upstream"]}
    assert {relay.context.span_id, submission.context.span_id} <= upstream_parents
    # The upstream got the trace: both the run and the submission carried it.
    assert len(seen) == 2 and all(h is not None and TRACE_ID in h for h in seen)


@pytest.mark.asyncio
async def test_without_a_traceparent_the_relay_starts_a_trace(
    start_tools: StartTools, exporter: InMemorySpanExporter
) -> None:
    tg = await start_tools(ToolRegistry.from_module(runcast_e2e_tools))
    sdk = sdk_client(tg.gateway)
    assistant_id, thread_id = await new_thread(sdk)
    exporter.clear()
    await stream_run(sdk, assistant_id, thread_id)
    await sdk.close()
    relays = [s for s in exporter.get_finished_spans() if s.name == "runcast.relay"]
    assert len(relays) == 1 and relays[0].parent is None
