"""Fixtures for tool automation tests: an event recorder and a started ``ToolAutomation``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tool_scenarios import SECRET, AutomationFactory, Recorder

from gateway.state import ToolRounds
from gateway.tools import ToolAutomation, ToolRegistry, ToolSettings


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def automation_for() -> AutomationFactory:
    """``async with automation_for(registry, **settings) as automation``: started, then closed."""

    @asynccontextmanager
    async def factory(
        registry: ToolRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rounds: ToolRounds | None = None,
        **fields: Any,
    ) -> AsyncIterator[ToolAutomation]:
        fields.setdefault("timeout", 5.0)
        if fields.get("webhooks"):
            fields.setdefault("webhook_secret", SECRET)
            fields.setdefault("webhook_backoff", 0.01)
        automation = ToolAutomation(ToolSettings(**fields), registry, clock=clock, rounds=rounds)
        await automation.start()
        try:
            yield automation
        finally:
            await automation.aclose()

    return factory
