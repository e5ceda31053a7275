"""One fixture per state interface, parametrized by implementation (``state_factories``).

The Redis implementations run against a private ``redis-server`` (the hub tests' fixture,
``tests/gateway/hub/redis_server.py``), each test under a fresh key namespace.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from state_factories import CLAIMS, LEASES, LIVE, MARKS, ROUNDS, SCHEDULES, THREADS, Backend

from gateway.state import (
    ActionClaims,
    ExpirySchedule,
    LiveRuns,
    RunLeases,
    RunThreads,
    SubmissionMarks,
    ToolRounds,
)
from gateway.state.redis import state_client

sys.path.append(str(Path(__file__).resolve().parent.parent / "hub"))
from redis_server import RedisServer, served  # found through the line above


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from served(tmp_path_factory)


@pytest_asyncio.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Backend]]:
    if request.param == "memory":
        yield "memory", Backend()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = state_client(server.url)
    try:
        yield "redis", Backend(client, f"test-{uuid.uuid4().hex}")
    finally:
        await client.aclose()


@pytest.fixture
def leases(backend: tuple[str, Backend]) -> RunLeases:
    return LEASES[backend[0]](backend[1])


@pytest.fixture
def claims(backend: tuple[str, Backend]) -> ActionClaims:
    return CLAIMS[backend[0]](backend[1])


@pytest.fixture
def schedule(backend: tuple[str, Backend]) -> ExpirySchedule:
    return SCHEDULES[backend[0]](backend[1])


@pytest.fixture
def threads(backend: tuple[str, Backend]) -> RunThreads:
    return THREADS[backend[0]](backend[1])


@pytest.fixture
def rounds(backend: tuple[str, Backend]) -> ToolRounds:
    return ROUNDS[backend[0]](backend[1])


@pytest.fixture
def live(backend: tuple[str, Backend]) -> LiveRuns:
    return LIVE[backend[0]](backend[1])


@pytest.fixture
def marks(backend: tuple[str, Backend]) -> SubmissionMarks:
    return MARKS[backend[0]](backend[1])
