"""RelayRegistry.aclose: no creator's response outlives it, even with a relay that will not stop."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import cast

import pytest

from gateway.errors import UpstreamConnectionError
from gateway.hub import MemoryBroker
from gateway.runs.feed import CreatorFeed
from gateway.runs.registry import RelayRegistry
from gateway.upstream import RunStream, UpstreamClient, UpstreamSettings


class WedgedStream:
    """An upstream response whose opening outlasts a cancellation, like a wedged library."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __aenter__(self) -> WedgedStream:
        self.entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await self.release.wait()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


@pytest.mark.asyncio
async def test_aclose_ends_the_creator_of_a_relay_that_does_not_stop() -> None:
    # Never contacted: the relay's only stream is the wedged one.
    upstream = UpstreamClient(UpstreamSettings(base_url="http://127.0.0.1:9/v1"))
    async with MemoryBroker() as broker:
        registry = RelayRegistry(broker, upstream, shutdown_timeout=0.05)
        stream = WedgedStream()
        feed = CreatorFeed(1024)
        start = asyncio.create_task(registry.start(lambda: cast(RunStream, stream), feed=feed))
        await stream.entered.wait()
        reader = asyncio.create_task(feed.read())
        await registry.aclose()
        assert registry.closed
        async with asyncio.timeout(5):
            assert await reader is None  # the creator's response ends
        assert registry.statistics().active == 1
        with pytest.raises(RuntimeError):
            await registry.start(lambda: cast(RunStream, WedgedStream()), feed=None)

        stream.release.set()
        async with asyncio.timeout(5):
            while registry.statistics().active:
                await asyncio.sleep(0.01)
        with pytest.raises(UpstreamConnectionError):
            await start
        await registry.aclose()  # idempotent
