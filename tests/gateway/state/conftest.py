"""One fixture per state interface, parametrized by implementation factory (``state_factories``)."""

from __future__ import annotations

import pytest
from state_factories import CLAIMS, LEASES, ROUNDS, SCHEDULES, THREADS

from gateway.state import ActionClaims, ExpirySchedule, RunLeases, RunThreads, ToolRounds


@pytest.fixture(params=sorted(LEASES))
def leases(request: pytest.FixtureRequest) -> RunLeases:
    return LEASES[request.param]()


@pytest.fixture(params=sorted(CLAIMS))
def claims(request: pytest.FixtureRequest) -> ActionClaims:
    return CLAIMS[request.param]()


@pytest.fixture(params=sorted(SCHEDULES))
def schedule(request: pytest.FixtureRequest) -> ExpirySchedule:
    return SCHEDULES[request.param]()


@pytest.fixture(params=sorted(THREADS))
def threads(request: pytest.FixtureRequest) -> RunThreads:
    return THREADS[request.param]()


@pytest.fixture(params=sorted(ROUNDS))
def rounds(request: pytest.FixtureRequest) -> ToolRounds:
    return ROUNDS[request.param]()
