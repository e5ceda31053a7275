"""Owner of every run driver task of one simulator app (Assistants runs, responses, chat streams).

Runs execute server-side (spec §5): a non-streamed run progresses in the background so polling
(``create_and_poll``) sees it move, and a streamed run carries on when its client drops. Each run is
one task created here, tracked in a set, and cancelled and awaited by :meth:`Engine.aclose` (wired
to the app's shutdown and cleanup), or when the store evicts the run's thread. Nothing is
fire-and-forget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

from gateway.mock.driver import RunDriver
from gateway.mock.requests import FunctionDefinition
from gateway.mock.scenarios import Scenario
from gateway.mock.settings import MockSettings
from gateway.mock.sink import StreamSink
from gateway.mock.store import RunRecord, ThreadRecord

__all__ = ["Engine", "EngineStatistics"]

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0


class EngineStatistics(msgspec.Struct, frozen=True, kw_only=True):
    active_runs: int
    """Driver tasks alive: runs, responses and chat completions."""
    started_runs: int


class Engine:
    """Starts run drivers and owns their tasks."""

    def __init__(self, settings: MockSettings) -> None:
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = 0
        self._closed = False

    def start_run(
        self,
        *,
        record: RunRecord,
        thread: ThreadRecord,
        scenario: Scenario,
        tools: list[FunctionDefinition],
        announce_thread: bool = False,
        sink: StreamSink | None = None,
    ) -> RunDriver:
        if self._closed:
            raise RuntimeError("the simulator is shutting down")
        loop = asyncio.get_running_loop()
        driver = RunDriver(
            settings=self._settings,
            record=record,
            thread=thread,
            scenario=scenario,
            tools=tools,
            announce_thread=announce_thread,
            deadline=loop.time() + self._settings.expires_in,
        )
        if sink is not None:
            driver.attach(sink)
        record.driver = driver
        driver.task = self.spawn(driver.main(), f"mock-run {record.run.id}")
        return driver

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task owned here (cancelled and awaited by :meth:`aclose`)."""
        if self._closed:
            coro.close()
            raise RuntimeError("the simulator is shutting down")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        self._started += 1
        task.add_done_callback(self._task_done)
        return task

    def thread_evicted(self, thread: ThreadRecord) -> None:
        """Stop the drivers of an evicted thread's runs (their state is gone with it)."""
        for record in thread.runs.values():
            driver = record.driver
            if isinstance(driver, RunDriver) and driver.task is not None:
                driver.task.cancel()

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(active_runs=len(self._tasks), started_runs=self._started)

    async def aclose(self) -> None:
        """Cancel every driver and wait for them (bounded); idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.wait(tasks)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("run driver %s crashed", task.get_name(), exc_info=exc)
