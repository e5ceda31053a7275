"""ActionExpiry (expiry.py): its lines about a run carry that run's ids, not a relay's."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from gateway import logs
from gateway.hub import HubEvent, MemoryBroker
from gateway.runs.assistants.protocol import ASSISTANTS
from gateway.runs.channels import run_channel
from gateway.runs.expiry import ActionExpiry
from gateway.state import SharedState
from gateway.upstream import UpstreamClient, UpstreamSettings


class _Unreadable:
    """The Assistants protocol, except that reading a run fails."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ASSISTANTS, name)

    async def fetch_run(self, *args: Any, **kwargs: Any) -> tuple[str, bytes] | None:
        raise RuntimeError("the run cannot be read")


class _Lines(logging.Handler):
    """Each record's message with the log ids of the context it was logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, dict[str, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logs.context_ids()))


@pytest.mark.asyncio
async def test_the_shared_task_logs_each_run_with_its_own_ids() -> None:
    broker = MemoryBroker()
    state = SharedState.memory()
    lines = _Lines()
    logger = logging.getLogger("runcast.relay")
    logger.addHandler(lines)
    async with UpstreamClient(UpstreamSettings(base_url="http://127.0.0.1:9/v1")) as upstream:
        expiry = ActionExpiry(
            broker,
            upstream,
            protocol=_Unreadable(),  # type: ignore[arg-type]
            claims=state.claims,
            schedule=state.schedule,
            leases=state.leases,
            grace=0.0,
        )
        position = await broker.publish([run_channel("run_2")], [HubEvent("done", b"[DONE]")])

        async def relay() -> None:
            # The relay whose watch starts the shared task has its own run's ids bound.
            logs.bind(run_id="run_1", thread_id="thread_1", response_id="resp_1")
            await expiry.watch(
                "run_2",
                "thread_2",
                expires_at=int(time.time()) - 10,
                seq=position[run_channel("run_2")].seq,
                api_key=None,
            )

        try:
            await asyncio.create_task(relay())
            async with asyncio.timeout(5):
                while not any("could not settle" in message for message, _ in lines.lines):
                    await asyncio.sleep(0.01)
        finally:
            logger.removeHandler(lines)
            await expiry.aclose()
            await broker.aclose()
    (ids,) = [ids for message, ids in lines.lines if "could not settle" in message]
    assert ids == {"run_id": "run_2", "thread_id": "thread_2"}
