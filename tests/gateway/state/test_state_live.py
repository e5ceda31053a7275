"""LiveRuns and SubmissionMarks: what failover reads (gateway/state/live.py, marks.py)."""

from __future__ import annotations

import pytest

from gateway.state import LiveRun, LiveRuns, LiveStream, SubmissionMark, SubmissionMarks

pytestmark = pytest.mark.asyncio


def _run(run_id: str, expires_at: float) -> LiveRun:
    return LiveRun(run_id=run_id, thread_id=f"t_{run_id}", api_key="sk", expires_at=expires_at)


async def test_only_runs_past_their_expiry_are_listed_oldest_first(live: LiveRuns) -> None:
    await live.put(_run("run_3", 300.0))
    await live.put(_run("run_1", 100.0))
    await live.put(_run("run_2", 200.0))
    assert await live.expired(50.0, limit=10) == []
    assert [r.run_id for r in await live.expired(250.0, limit=10)] == ["run_1", "run_2"]
    assert [r.run_id for r in await live.expired(250.0, limit=1)] == ["run_1"]
    found = (await live.expired(100.0, limit=10))[0]
    assert (found.thread_id, found.api_key) == ("t_run_1", "sk")


async def test_touch_moves_a_run_on_and_remove_forgets_it(live: LiveRuns) -> None:
    await live.put(_run("run_1", 100.0))
    await live.touch("run_1", 500.0)
    await live.touch("run_unknown", 1.0)  # not recorded: nothing is
    assert await live.expired(400.0, limit=10) == []
    assert [r.run_id for r in await live.expired(500.0, limit=10)] == ["run_1"]
    await live.remove("run_1")
    assert await live.expired(1e12, limit=10) == []


async def test_a_stream_record_keeps_what_its_taker_needs(live: LiveRuns) -> None:
    stream = LiveStream(
        kind="response",
        object_id="resp_1",
        channels=("conversation:conv_1", "channel:ops"),
        resumable=True,
        stored=False,
    )
    await live.put(_run("run_1", 200.0))
    await live.put(
        LiveRun(
            run_id="response:resp_1", thread_id="", api_key="sk", expires_at=100.0, stream=stream
        )
    )
    found = await live.expired(300.0, limit=10)
    assert [(r.run_id, r.stream) for r in found] == [
        ("response:resp_1", stream),
        ("run_1", None),
    ]
    await live.remove("response:resp_1")
    assert [r.run_id for r in await live.expired(300.0, limit=10)] == ["run_1"]


async def test_a_mark_is_replaced_and_forgotten(marks: SubmissionMarks) -> None:
    assert await marks.get("run_1") is None
    await marks.mark("run_1", ("call_a", "call_b"), "submitting")
    assert await marks.get("run_1") == SubmissionMark(
        call_ids=("call_a", "call_b"), state="submitting"
    )
    await marks.mark("run_1", ("call_a", "call_b"), "submitted")
    mark = await marks.get("run_1")
    assert mark is not None and mark.state == "submitted"
    await marks.forget("run_1")
    assert await marks.get("run_1") is None
