"""Spec §1.2 endpoints of the simulator checked with the official SDK and raw HTTP."""

from __future__ import annotations

import openai
import pytest
from mock_helpers import MockAPI
from openai import AsyncOpenAI


@pytest.mark.asyncio
async def test_modify_run_replaces_metadata_and_returns_the_run(
    sdk: AsyncOpenAI, api: MockAPI
) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    thread = await sdk.beta.threads.create()
    run = await sdk.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
    )
    assert run.status == "completed"

    updated = await sdk.beta.threads.runs.update(
        run_id=run.id, thread_id=thread.id, metadata={"ticket": "42"}
    )

    assert updated.id == run.id
    assert updated.object == "thread.run"
    assert updated.metadata == {"ticket": "42"}
    assert updated.status == "completed"
    stored = await api.ok("GET", f"/threads/{thread.id}/runs/{run.id}")
    assert stored["metadata"] == {"ticket": "42"}


@pytest.mark.asyncio
async def test_modify_run_rejects_other_fields_and_unknown_runs(
    sdk: AsyncOpenAI, api: MockAPI
) -> None:
    thread = await sdk.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await sdk.beta.threads.runs.update(run_id="run_nope", thread_id=thread.id, metadata={})
    status, body, _ = await api.call(
        "POST", f"/threads/{thread.id}/runs/run_nope", {"instructions": "x"}
    )
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
