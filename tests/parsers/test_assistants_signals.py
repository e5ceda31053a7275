"""What each Assistants event means to the gateway (parsers/assistants/signals.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import parsers.assistants as pa
from parsers.assistants.signals import ACTION_STATUS, SETTLED_STATUSES, signal
from parsers.signals import Empty, GroupSeen, ItemFinal, RunSeen, StreamEnd, StreamError
from parsers.sse import ServerSentEvent, SSEDecoder

DATA = Path(__file__).resolve().parents[1] / "data" / "assistants"


def golden(name: str) -> list[pa.AssistantStreamEvent]:
    decoder = SSEDecoder()
    events = decoder.feed((DATA / name).read_bytes()) + decoder.close()
    return [pa.decode_event(e) for e in events]


def signals(name: str) -> list[object]:
    return [s for s in map(signal, golden(name)) if s is not None]


def test_a_text_run_signals_its_states_final_items_and_end() -> None:
    sigs = signals("A-text.sse")
    runs = [s for s in sigs if isinstance(s, RunSeen)]
    assert [r.status for r in runs][-2:] == ["in_progress", "completed"]
    assert runs[0].status == "queued"
    assert len({r.run_id for r in runs}) == 1 and all(r.group_id for r in runs)
    assert all(isinstance(r.run, pa.Run) and r.run.id == r.run_id for r in runs)
    finals = [s for s in sigs if isinstance(s, ItemFinal)]
    assert {f.kind for f in finals} == {"message", "step"}
    assert isinstance(sigs[-1], StreamEnd)


def test_requires_action_is_the_action_status_and_settles_the_stream() -> None:
    runs = [s for s in signals("B1-requires-action.sse") if isinstance(s, RunSeen)]
    last = runs[-1]
    assert last.status == ACTION_STATUS and ACTION_STATUS in SETTLED_STATUSES
    assert last.run.required_action is not None
    assert pa.TERMINAL_RUN_STATUSES < SETTLED_STATUSES


def test_thread_created_names_the_group() -> None:
    sigs = signals("J-thread-and-run.sse")
    assert isinstance(sigs[0], GroupSeen)
    first_run = next(s for s in sigs if isinstance(s, RunSeen))
    assert first_run.group_id == sigs[0].group_id


def test_error_event_and_empty_unknown_event() -> None:
    assert any(isinstance(s, StreamError) for s in signals("C-error-event.sse"))
    empty = pa.decode_event(ServerSentEvent(event="vendor.ping", data_bytes=b""))
    assert signal(empty) == Empty()
    unknown = pa.decode_event(ServerSentEvent(event="vendor.ping", data_bytes=b"{}"))
    assert signal(unknown) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("F-run-failed.sse", "failed"), ("H-run-cancelled.sse", "cancelled")],
)
def test_terminal_statuses_are_seen(name: str, expected: str) -> None:
    runs = [s for s in signals(name) if isinstance(s, RunSeen)]
    assert runs[-1].status == expected and expected in pa.TERMINAL_RUN_STATUSES


def test_deltas_carry_no_signal() -> None:
    deltas = [e for e in golden("A-text.sse") if isinstance(e, pa.MessageDeltaEvent)]
    assert deltas and all(signal(e) is None for e in deltas)


def test_in_progress_items_are_not_final() -> None:
    messages = [e for e in golden("A-text.sse") if isinstance(e, pa.MessageEvent)]
    not_final = [e for e in messages if e.data.status == "in_progress"]
    assert not_final and all(signal(e) is None for e in not_final)
