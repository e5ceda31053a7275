"""The relay's phase table, without sockets (gateway/runs/lifecycle.py): every listed transition,
every unlisted pair refused, and the paths a relay takes through it."""

from __future__ import annotations

import itertools

import pytest

from gateway.runs.lifecycle import (
    FINAL_PHASES,
    TRANSITIONS,
    Input,
    Lifecycle,
    LifecycleError,
    Phase,
)


def at(phase: Phase) -> Lifecycle:
    life = Lifecycle()
    life.phase = phase
    return life


def run_through(*inputs: Input) -> Lifecycle:
    life = Lifecycle()
    for event in inputs:
        life.feed(event)
    return life


@pytest.mark.parametrize(
    ("phase", "event", "expected"),
    [(p, i, n) for (p, i), n in TRANSITIONS.items()],
    ids=[f"{p.value}-{i.value}" for p, i in TRANSITIONS],
)
def test_every_listed_transition(phase: Phase, event: Input, expected: Phase) -> None:
    life = at(phase)
    assert life.feed(event) is expected
    assert life.phase is expected


UNLISTED = [(p, i) for p, i in itertools.product(Phase, Input) if (p, i) not in TRANSITIONS]


@pytest.mark.parametrize(
    ("phase", "event"), UNLISTED, ids=[f"{p.value}-{i.value}" for p, i in UNLISTED]
)
def test_every_unlisted_pair_is_refused_and_changes_nothing(phase: Phase, event: Input) -> None:
    life = at(phase)
    with pytest.raises(LifecycleError, match=event.value):
        life.feed(event)
    assert life.phase is phase


def test_final_phases_accept_nothing_and_every_phase_is_reachable() -> None:
    for phase in FINAL_PHASES:
        assert not [i for i in Input if (phase, i) in TRANSITIONS]
    reached = {Phase.OPENING, *TRANSITIONS.values()}
    assert reached == set(Phase)


def test_a_plain_run() -> None:
    life = run_through(Input.FIRST_EVENT, Input.SEGMENT_END)
    assert life.phase is Phase.ENDED and life.published and not life.broken


def test_a_tool_round_answered_by_runcast() -> None:
    life = run_through(
        Input.FIRST_EVENT,
        Input.ACTION_HELD,
        Input.SEGMENT_END,
        Input.SUBMITTED,
        Input.FIRST_EVENT,
        Input.SEGMENT_END,
    )
    assert life.phase is Phase.ENDED


@pytest.mark.parametrize("end", [Input.CLOSED])
def test_an_action_passed_on(end: Input) -> None:
    life = run_through(Input.FIRST_EVENT, Input.ACTION_HELD, Input.SEGMENT_END, end)
    assert life.phase is Phase.ENDED and not life.broken


def test_outputs_refused() -> None:
    life = run_through(
        Input.FIRST_EVENT, Input.ACTION_HELD, Input.SEGMENT_END, Input.SUBMITTED, Input.REFUSED
    )
    assert life.phase is Phase.ENDED


@pytest.mark.parametrize("first", [Input.STREAM_FAILED, Input.SEGMENT_END])
def test_a_start_that_fails_publishes_nothing(first: Input) -> None:
    life = run_through(first)
    assert life.phase is Phase.START_FAILED and not life.published and life.broken


def test_a_broken_stream_recovered_at_an_action_is_answered() -> None:
    life = run_through(Input.FIRST_EVENT, Input.STREAM_FAILED)
    assert life.phase is Phase.RECOVERING and life.broken and life.published
    life.feed(Input.ACTION_HELD)
    life.feed(Input.RECOVERED)
    assert life.phase is Phase.ANSWERING and not life.broken


def test_a_broken_stream_whose_end_cannot_be_learnt() -> None:
    life = run_through(Input.FIRST_EVENT, Input.ACTION_HELD, Input.STREAM_FAILED, Input.GAVE_UP)
    assert life.phase is Phase.FAILED and life.broken and life.published
