"""RunRelay against a real upstream socket.

A relay reports its start only once the run's first batch is in the hub: the creator's response head (run id, subscribe token) is sent when ``RelayRegistry.start``
returns; a frontend that subscribes on another node at once must find the run's channel in the
shared log. Here the upstream sends its whole stream in one write (so ``thread.run.created`` and
``thread.run.queued`` arrive in one read) and the broker takes a while to append (as Redis does
right after a restart, reconnecting its pool).

A finished relay is freed by reference counting alone: a cycle through it would keep each run's
relay, feed, task and coroutine (about 50 objects) until a full collection, whose pause grows
with them (50-125 ms every few seconds at 100 runs/s, measured on ``runcast serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from gateway.hub import Fence, HubEvent, MemoryBroker, Numbered, Position
from gateway.runs.actions import ActionHandler, ActionOutcome, Emit, HeldAction
from gateway.runs.channels import run_channel
from gateway.runs.feed import CreatorFeed
from gateway.runs.registry import RelayRegistry
from gateway.runs.relay import RelayStart, RunRelay
from gateway.upstream import UpstreamClient, UpstreamSettings

pytestmark = pytest.mark.asyncio

Starter = tuple[Callable[[CreatorFeed], Awaitable[RelayStart]], RelayRegistry]

STREAM = (Path(__file__).resolve().parents[2] / "data" / "upstream" / "A-text.sse").read_bytes()


class SlowBroker(MemoryBroker):
    """A memory broker whose appends land ``delay`` seconds after they are asked for."""

    delay = 0.05

    async def publish(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        *,
        fence: Fence | None = None,
        first: Numbered | None = None,
    ) -> dict[str, Position]:
        await asyncio.sleep(self.delay)
        return await super().publish(channels, events, fence=fence, first=first)


@pytest_asyncio.fixture
async def upstream_url() -> AsyncIterator[str]:
    async def runs(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(STREAM)  # one write: the first run events share a read
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/threads/{thread_id}/runs", runs)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def relays(
    upstream_url: str, broker: MemoryBroker, handler: ActionHandler | None = None
) -> AsyncIterator[Starter]:
    """A relay registry on ``broker`` whose starts stream one run from ``upstream_url``."""
    settings = UpstreamSettings(base_url=upstream_url, api_key="sk-test")
    async with UpstreamClient(settings) as upstream, broker:
        registry = RelayRegistry(broker, upstream, action_handler=handler)

        async def start(feed: CreatorFeed) -> RelayStart:
            async with asyncio.timeout(10):
                return await registry.start(
                    lambda: upstream.stream_run("thread_9Qx", {"assistant_id": "asst_42"}),
                    feed=feed,
                )

        try:
            yield start, registry
        finally:
            await registry.aclose()


async def test_start_is_reported_after_the_first_batch_is_in_the_hub(upstream_url: str) -> None:
    broker = SlowBroker()
    async with relays(upstream_url, broker) as (start, _registry):
        started = await start(CreatorFeed(1 << 20))
        assert started.run_id == "run_7Lm"
        # Nothing awaited since: the channel must already hold the run's first events.
        info = await broker.channel_info(run_channel("run_7Lm"))
        assert info is not None and info.last_seq >= 1


class NoTools:
    """An action handler that answers nothing (its relays still get an action answerer)."""

    def handles(self, action: HeldAction) -> bool:
        return False

    async def run_action(self, action: HeldAction, emit: Emit | None = None) -> ActionOutcome:
        raise AssertionError("never asked")

    async def forget(self, run_id: str) -> None:
        return None


@pytest.mark.parametrize("handler", [None, NoTools()], ids=["no-handler", "handler"])
async def test_a_finished_relay_is_freed_without_the_cycle_collector(
    upstream_url: str, handler: ActionHandler | None
) -> None:
    async with relays(upstream_url, MemoryBroker(), handler) as (start, registry):
        gc.collect()
        gc.disable()
        try:
            feed = CreatorFeed(1 << 20)
            await start(feed)
            async with asyncio.timeout(10):
                while await feed.read() is not None:
                    pass
                await registry.wait_idle()
            feed.detach()
            del feed
            # gc.get_objects() also lists unreachable cycles the collector has not freed yet.
            assert not [o for o in gc.get_objects() if isinstance(o, RunRelay)]
        finally:
            gc.enable()
