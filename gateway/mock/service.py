"""The simulated API's operations, independent of HTTP: look-ups, creation, the run rules.

Every rule that decides an HTTP status lives here: 404 for unknown ids, 400 for a second run or a
new message on a thread with an active run (spec §5, ``requires_action`` counts as active), 400
for tool outputs that are not exactly the pending calls or that come too late, 400 for cancelling
a finished run, and the scenario-driven 429/500 refusals. Routes decode bodies, call these
methods and encode the answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from gateway.mock import lifecycle as lc
from gateway.mock.builders import new_run, user_message
from gateway.mock.engine import Engine
from gateway.mock.errors import APIError, not_found, quoted
from gateway.mock.objects import (
    Assistant,
    Message,
    Run,
    RunStep,
    Thread,
)
from gateway.mock.pagination import ListParams, Page, paginate
from gateway.mock.requests import (
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    CreateThreadRequest,
    ModifyRunRequest,
    SubmitToolOutputsRequest,
)
from gateway.mock.scenarios import (
    Scenario,
    function_tools,
    requested_scenario,
    scenario_for_run,
)
from gateway.mock.settings import MockSettings
from gateway.mock.sink import StreamSink
from gateway.mock.store import MockStore, RunRecord, ThreadRecord
from gateway.mock.wire import http_refusal

__all__ = ["MockService"]


class MockService:
    """State and rules of one simulator app (one per ``create_app``)."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.store = MockStore(settings, on_thread_evicted=self.engine.thread_evicted)

    # -- assistants ----------------------------------------------------------------------------

    def create_assistant(self, req: CreateAssistantRequest) -> Assistant:
        assistant = Assistant(
            id=lc.new_id("asst"),
            created_at=lc.now(),
            name=req.name,
            description=req.description,
            model=req.model,
            instructions=req.instructions,
            tools=list(req.tools),
            tool_resources=req.tool_resources,
            metadata=dict(req.metadata or {}),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            response_format=req.response_format or "auto",
        )
        self.store.assistants.put(assistant.id, assistant)
        return assistant

    def assistant(self, assistant_id: str, param: str | None = None) -> Assistant:
        assistant = self.store.assistants.get(assistant_id)
        if assistant is None:
            raise not_found("assistant", assistant_id, param)
        return assistant

    def list_assistants(self, params: ListParams) -> Page:
        return paginate(list(self.store.assistants.values()), params, _id)

    # -- threads and messages ------------------------------------------------------------------

    def create_thread(self, req: CreateThreadRequest | None) -> ThreadRecord:
        req = req or CreateThreadRequest()
        thread = Thread(
            id=lc.new_id("thread"),
            created_at=lc.now(),
            metadata=dict(req.metadata or {}),
            tool_resources=req.tool_resources,
        )
        record = self.store.add_thread(thread)
        for message in req.messages or ():
            record.add_message(user_message(thread.id, message))
        return record

    def thread(self, thread_id: str) -> ThreadRecord:
        record = self.store.threads.get(thread_id)
        if record is None:
            raise not_found("thread", thread_id)
        return record

    def add_message(self, thread_id: str, req: CreateMessageRequest) -> Message:
        record = self.thread(thread_id)
        active = _active_run(record)
        if active is not None:
            raise APIError(
                400, f"Can't add messages to {thread_id} while a run {active} is active."
            )
        message = user_message(thread_id, req)
        record.add_message(message)
        return message

    def message(self, thread_id: str, message_id: str) -> Message:
        message = self.thread(thread_id).messages.get(message_id)
        if message is None:
            raise not_found("message", message_id)
        return message

    def list_messages(self, thread_id: str, params: ListParams, run_id: str | None) -> Page:
        messages = list(self.thread(thread_id).messages.values())
        if run_id is not None:
            messages = [m for m in messages if m.run_id == run_id]
        return paginate(messages, params, _id)

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self, thread_id: str, req: CreateRunRequest, sink: StreamSink | None
    ) -> RunRecord:
        scenario = self._scenario(req.metadata)
        thread = self.thread(thread_id)
        assistant = self.assistant(req.assistant_id, "assistant_id")
        active = _active_run(thread)
        if active is not None:
            raise APIError(400, f"Thread {thread_id} already has an active run {active}.")
        for message in req.additional_messages or ():
            thread.add_message(user_message(thread_id, message))
        instructions = req.instructions
        if instructions is None:
            instructions = assistant.instructions or ""
        if req.additional_instructions:
            instructions = f"{instructions}\n{req.additional_instructions}".lstrip("\n")
        return self._start(thread, assistant, req, instructions, scenario, sink, announce=False)

    def create_thread_and_run(
        self, req: CreateThreadAndRunRequest, sink: StreamSink | None
    ) -> RunRecord:
        scenario = self._scenario(req.metadata)
        assistant = self.assistant(req.assistant_id, "assistant_id")
        thread = self.create_thread(req.thread)
        instructions = req.instructions if req.instructions is not None else assistant.instructions
        return self._start(
            thread, assistant, req, instructions or "", scenario, sink, announce=True
        )

    def run(self, thread_id: str, run_id: str) -> RunRecord:
        record = self.thread(thread_id).runs.get(run_id)
        if record is None:
            raise not_found("run", run_id)
        return record

    def modify_run(self, thread_id: str, run_id: str, req: ModifyRunRequest) -> Run:
        run = self.run(thread_id, run_id).run
        if req.metadata is not None:
            run.metadata = dict(req.metadata)
        return run

    def list_runs(self, thread_id: str, params: ListParams) -> Page:
        runs = [record.run for record in self.thread(thread_id).runs.values()]
        return paginate(runs, params, _id)

    def step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        step = self.run(thread_id, run_id).steps.get(step_id)
        if step is None:
            raise not_found("run step", step_id)
        return step

    def list_steps(self, thread_id: str, run_id: str, params: ListParams) -> Page:
        return paginate(list(self.run(thread_id, run_id).steps.values()), params, _id)

    def submit_tool_outputs(
        self, thread_id: str, run_id: str, req: SubmitToolOutputsRequest, sink: StreamSink | None
    ) -> Run:
        record = self.run(thread_id, run_id)
        run, driver = record.run, record.driver
        status = run.status
        late = driver is not None and asyncio.get_running_loop().time() >= driver.deadline
        if status == "requires_action" and late:
            status = "expired"  # the driver's timer has not fired yet; the answer is the same
        if status != "requires_action" or driver is None:
            raise APIError(400, f'Runs in status "{status}" do not accept tool outputs.')
        ids = [out.tool_call_id for out in req.tool_outputs]
        if len(set(ids)) != len(ids):
            raise APIError(400, "Duplicate tool_call_id in tool_outputs.", param="tool_outputs")
        unknown = sorted(set(ids) - driver.pending.keys())
        if unknown:
            raise APIError(
                400,
                f"No tool call found with id {quoted(unknown[0])} in the run's required action.",
                param="tool_outputs",
            )
        missing = sorted(driver.pending.keys() - set(ids))
        if missing:
            raise APIError(
                400,
                f"Expected tool outputs for call_ids {list(driver.pending)}, got {quoted(ids)}.",
                param="tool_outputs",
            )
        driver.submit(list(req.tool_outputs), sink)
        return run

    def cancel(self, thread_id: str, run_id: str) -> Run:
        record = self.run(thread_id, run_id)
        run, driver = record.run, record.driver
        if run.status not in ("queued", "in_progress", "requires_action") or driver is None:
            raise APIError(400, f"Cannot cancel run with status '{run.status}'.")
        driver.cancel()
        return run

    # -- helpers -------------------------------------------------------------------------------

    def _scenario(self, metadata: Mapping[str, str] | None) -> Scenario:
        scenario = requested_scenario(metadata, self.settings.scenario)
        if scenario is None:
            name = (metadata or {}).get("mock_scenario")
            raise APIError(400, f"Unknown mock_scenario {quoted(name)}.", param="metadata")
        refusal = http_refusal(scenario, self.settings.retry_after_s)
        if refusal is not None:
            raise refusal
        return scenario

    def _start(
        self,
        thread: ThreadRecord,
        assistant: Assistant,
        req: CreateRunRequest | CreateThreadAndRunRequest,
        instructions: str,
        scenario: Scenario,
        sink: StreamSink | None,
        *,
        announce: bool,
    ) -> RunRecord:
        run = new_run(
            thread.thread.id, assistant, req, instructions, expires_in=self.settings.expires_in
        )
        record = RunRecord(run)
        thread.add_run(record)
        thread.active_run_id = run.id
        functions = function_tools(run.tools)
        self.engine.start_run(
            record=record,
            thread=thread,
            scenario=scenario_for_run(scenario, functions),
            tools=functions,
            announce_thread=announce,
            sink=sink,
        )
        return record


def _id(obj: Assistant | Message | Run | RunStep) -> str:
    return obj.id


def _active_run(thread: ThreadRecord) -> str | None:
    run_id = thread.active_run_id
    if run_id is None:
        return None
    record = thread.runs.get(run_id)
    if record is None or record.run.status not in lc.ACTIVE:
        thread.active_run_id = None
        return None
    return run_id
