"""Fixtures for the cluster tests: a private ``redis-server``, one ``runcast mock`` and real
``runcast serve`` processes (nodes) sharing them, started and stopped by the test."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.append(str(Path(__file__).resolve().parent.parent / "hub"))
sys.path.append(str(Path(__file__).resolve().parent.parent / "http"))
from cluster_helpers import Cluster
from redis_server import RedisServer, served  # found through the lines above


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from served(tmp_path_factory)


@pytest_asyncio.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Cluster]:
    """An empty cluster on a flushed Redis; the test starts the mock and the nodes it needs."""
    redis_server.flush()
    async with Cluster(redis_server) as started:
        yield started
