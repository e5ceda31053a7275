"""The run lifecycle goes through the shared state it is given (``create_app(state=...)``): the
relay owns its run by lease while it pumps it, auth reads the run -> thread map, and the expiry
watcher leaves alone a run that someone else owns."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from http_helpers import (
    RecordingHandler,
    StartGateway,
    new_thread,
    sdk_client,
    sse_subscribe,
    stream_run,
)
from tool_helpers import WEATHER

from gateway.runs.channels import run_channel
from gateway.state import Lease, SharedState

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


class LeaseWatcher(RecordingHandler):
    """Records, as the creator sees the run start, who holds the run's lease."""

    def __init__(self, state: SharedState) -> None:
        super().__init__()
        self.state = state
        self.during: Lease | None = None

    async def on_event(self, event: object) -> None:
        await super().on_event(event)  # type: ignore[arg-type]
        if self.run_id is not None and self.during is None:
            self.during = await self.state.leases.holder(self.run_id)


@pytest.mark.asyncio
async def test_the_relay_holds_its_runs_lease_while_pumping_and_notes_its_thread(
    start_gateway: StartGateway,
) -> None:
    state = SharedState.memory()
    # Slow enough that the run is still being pumped when its first event reaches the creator.
    gateway = await start_gateway(sim={"delay_ms": 40}, state=state)
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk)
        watcher = await stream_run(sdk, assistant_id, thread_id, handler=LeaseWatcher(state))
        assert isinstance(watcher, LeaseWatcher)
        run_id = watcher.run_id
        assert run_id is not None
        assert watcher.during is not None and watcher.during.owner.startswith("relay-")
        async with asyncio.timeout(5):
            await gateway.relays.wait_idle()
        assert await state.leases.holder(run_id) is None
        assert await state.threads.thread_of(run_id) == thread_id
    finally:
        await sdk.close()


@pytest.mark.asyncio
async def test_expiry_leaves_a_run_owned_by_someone_else(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    state = SharedState.memory()
    grace = 0.2
    gateway = await start_gateway(
        sim={"scenario": "tool_call", "expires_in": 0.5}, expiry_grace=grace, state=state
    )
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
        creator = await stream_run(sdk, assistant_id, thread_id)
        run_id = creator.run_id
        assert run_id is not None
        async with asyncio.timeout(5):
            await gateway.relays.wait_idle()
        # Another gateway process pumps the run now.
        other = await state.leases.acquire(run_id, "elsewhere", ttl=30)
        assert other is not None
        run = await sdk.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        assert run.expires_at is not None
        await asyncio.sleep(max(0.0, run.expires_at + grace + 0.5 - time.time()))
        async with asyncio.timeout(5):
            while gateway.relays.statistics().awaiting_expiry:
                await asyncio.sleep(0.02)
        stats = gateway.broker.channel_statistics(run_channel(run_id))
        assert stats is not None and not stats.ended  # its owner reports the run's end
        resp, sub = await sse_subscribe(
            session, f"{gateway.url}/streams/runs/{run_id}?since=0", stop_at_done=2
        )
        await asyncio.sleep(0.1)
        assert not sub.done()
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        resp.close()
    finally:
        await sdk.close()
