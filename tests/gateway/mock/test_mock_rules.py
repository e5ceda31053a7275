"""HTTP rules of the simulator: headers, ids, the active-run rule, body validation, pagination."""

from __future__ import annotations

from typing import Any

import pytest
from mock_helpers import HEADERS, WEATHER_TOOL, MockAPI, last_run

ERROR_KEYS = {"message", "type", "param", "code"}


def assert_error(status: int, body: Any, expected: int, *, code: str | None = None) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    if code is not None:
        assert body["error"]["code"] == code


@pytest.mark.asyncio
async def test_authorization_is_required(api: MockAPI) -> None:
    status, body, _ = await api.call(
        "POST", "/threads", {}, headers={"OpenAI-Beta": "assistants=v2"}
    )
    assert_error(status, body, 401)
    bad = {"Authorization": "Basic abc", "OpenAI-Beta": "assistants=v2"}
    status, body, _ = await api.call("POST", "/threads", {}, headers=bad)
    assert_error(status, body, 401)


@pytest.mark.parametrize("beta", [None, "assistants=v1", "realtime=v1"])
@pytest.mark.asyncio
async def test_beta_header_is_required(api: MockAPI, beta: str | None) -> None:
    headers = {"Authorization": "Bearer x"}
    if beta is not None:
        headers["OpenAI-Beta"] = beta
    status, body, _ = await api.call("POST", "/threads", {}, headers=headers)
    assert_error(status, body, 400, code="invalid_beta")
    assert body["error"]["type"] == "invalid_request_error"
    several = {"Authorization": "Bearer x", "OpenAI-Beta": "realtime=v1, assistants=v2"}
    status, _, _ = await api.call("POST", "/threads", {}, headers=several)
    assert status == 200


@pytest.mark.asyncio
async def test_unknown_ids_are_404(api: MockAPI) -> None:
    assistant = await api.assistant()
    thread = await api.thread()
    tid = thread["id"]
    cases: list[tuple[str, str, Any]] = [
        ("GET", "/assistants/asst_nope", None),
        ("GET", "/threads/thread_nope", None),
        ("POST", "/threads/thread_nope/runs", {"assistant_id": assistant["id"]}),
        ("POST", f"/threads/{tid}/runs", {"assistant_id": "asst_nope"}),
        ("POST", "/threads/runs", {"assistant_id": "asst_nope"}),
        ("GET", f"/threads/{tid}/runs/run_nope", None),
        ("GET", f"/threads/{tid}/runs/run_nope/steps", None),
        ("POST", f"/threads/{tid}/runs/run_nope/cancel", None),
        ("POST", f"/threads/{tid}/runs/run_nope/submit_tool_outputs", {"tool_outputs": []}),
        ("GET", f"/threads/{tid}/messages/msg_nope", None),
        ("POST", "/threads/thread_nope/messages", {"role": "user", "content": "x"}),
    ]
    for method, path, body in cases:
        status, data, _ = await api.call(method, path, body)
        assert_error(status, data, 404)
    status, data, _ = await api.call("POST", f"/threads/{tid}/runs", {"assistant_id": "asst_nope"})
    assert data["error"]["param"] == "assistant_id"


@pytest.mark.asyncio
async def test_unknown_url_and_method_answer_in_error_shape(api: MockAPI) -> None:
    status, body, _ = await api.call("GET", "/nothing/here")
    assert_error(status, body, 404)
    assert body["error"]["message"] == "Invalid URL (GET /v1/nothing/here)"
    status, body, headers = await api.call("DELETE", "/threads/runs")
    assert_error(status, body, 405)
    assert "POST" in headers["Allow"]


@pytest.mark.asyncio
async def test_second_run_and_new_message_rejected_while_run_active(api: MockAPI) -> None:
    assistant = await api.assistant(WEATHER_TOOL)
    thread = await api.thread()
    tid = thread["id"]
    events = await api.run_stream(tid, assistant["id"], "tool_call")
    run = last_run(events)
    assert run["status"] == "requires_action"  # still active (spec §5)
    status, body, _ = await api.call(
        "POST", f"/threads/{tid}/runs", {"assistant_id": assistant["id"]}
    )
    assert_error(status, body, 400)
    assert run["id"] in body["error"]["message"] and "active" in body["error"]["message"]
    status, body, _ = await api.call(
        "POST", f"/threads/{tid}/messages", {"role": "user", "content": "more"}
    )
    assert_error(status, body, 400)
    assert (
        body["error"]["message"]
        == f"Can't add messages to {tid} while a run {run['id']} is active."
    )
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    await api.submit(tid, run["id"], {call_id: "done"})
    await api.ok("POST", f"/threads/{tid}/messages", {"role": "user", "content": "more"})
    await api.run_stream(tid, assistant["id"])


@pytest.mark.asyncio
async def test_submit_must_cover_exactly_the_pending_calls(api: MockAPI) -> None:
    assistant = await api.assistant(WEATHER_TOOL, {"type": "function", "function": {"name": "b"}})
    thread = await api.thread()
    tid = thread["id"]
    run = last_run(await api.run_stream(tid, assistant["id"], "parallel_tool_calls"))
    ids = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    path = f"/threads/{tid}/runs/{run['id']}/submit_tool_outputs"
    bad_bodies = [
        {"tool_outputs": [{"tool_call_id": ids[0], "output": "x"}]},
        {"tool_outputs": [{"tool_call_id": i, "output": "x"} for i in [*ids, "call_extra"]]},
        {"tool_outputs": [{"tool_call_id": ids[0], "output": "x"}] * 2},
        {"tool_outputs": [{"tool_call_id": ids[0]}]},
        {"tool_outputs": [{"tool_call_id": i, "output": "x"} for i in ids], "extra": 1},
    ]
    for body in bad_bodies:
        status, data, _ = await api.call("POST", path, body)
        assert_error(status, data, 400)
    good = {"tool_outputs": [{"tool_call_id": i, "output": "x"} for i in ids]}
    queued = await api.ok("POST", path, good)
    assert queued["status"] == "queued" and queued["required_action"] is None
    await api.wait_status(tid, run["id"], "completed")
    status, data, _ = await api.call("POST", path, good)
    assert_error(status, data, 400)
    assert data["error"]["message"] == 'Runs in status "completed" do not accept tool outputs.'


@pytest.mark.asyncio
async def test_bad_bodies_are_400_with_param(api: MockAPI) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    path = f"/threads/{tid}/runs"
    cases: list[tuple[Any, str | None]] = [
        ({}, "assistant_id"),
        ({"assistant_id": assistant["id"], "surprise": True}, "surprise"),
        ({"assistant_id": assistant["id"], "thread": {}}, "thread"),
        ({"assistant_id": assistant["id"], "truncation_strategy": {}}, "truncation_strategy.type"),
        ({"assistant_id": assistant["id"], "temperature": 5}, "temperature"),
        ({"assistant_id": assistant["id"], "tools": [{"type": "nope"}]}, "tools[0].type"),
        ({"assistant_id": assistant["id"], "metadata": {"mock_scenario": "nope"}}, "metadata"),
        ({"assistant_id": assistant["id"], "max_completion_tokens": 10}, "max_completion_tokens"),
    ]
    for body, param in cases:
        status, data, _ = await api.call("POST", path, body)
        assert_error(status, data, 400)
        assert data["error"]["param"] == param, data
    async with api.session.post(api.base_url + path, data=b"{not json", headers=HEADERS) as resp:
        assert resp.status == 400
        assert "parse the JSON" in (await resp.json())["error"]["message"]
    status, data, _ = await api.call("POST", "/assistants", {"name": "no model"})
    assert_error(status, data, 400)
    status, data, _ = await api.call(
        "POST", f"/threads/{tid}/messages", {"role": "system", "content": "x"}
    )
    assert_error(status, data, 400)


@pytest.mark.asyncio
async def test_http_error_scenarios_create_nothing(api: MockAPI) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": "rate_limited"}}
    status, data, headers = await api.call("POST", f"/threads/{tid}/runs", body)
    assert_error(status, data, 429, code="rate_limit_exceeded")
    assert headers["Retry-After"] == "1"
    body["metadata"] = {"mock_scenario": "server_error"}
    status, data, _ = await api.call("POST", f"/threads/{tid}/runs", {**body, "stream": True})
    assert_error(status, data, 500, code="server_error")
    runs = await api.ok("GET", f"/threads/{tid}/runs")
    assert runs["data"] == []


@pytest.mark.asyncio
async def test_cancel_finished_run_is_400(api: MockAPI) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    run = last_run(await api.run_stream(tid, assistant["id"]))
    status, data, _ = await api.call("POST", f"/threads/{tid}/runs/{run['id']}/cancel")
    assert_error(status, data, 400)
    assert data["error"]["message"] == "Cannot cancel run with status 'completed'."


@pytest.mark.asyncio
async def test_run_responses_carry_poll_hint_and_request_id(api: MockAPI) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    status, run, headers = await api.call(
        "POST", f"/threads/{tid}/runs", {"assistant_id": assistant["id"]}
    )
    assert status == 200 and run["status"] == "queued"
    assert headers["openai-poll-after-ms"] == "50"
    assert headers["x-request-id"].startswith("req_")


@pytest.mark.asyncio
async def test_list_pagination(api: MockAPI) -> None:
    tid = (await api.thread())["id"]
    ids = [
        (await api.ok("POST", f"/threads/{tid}/messages", {"role": "user", "content": str(i)}))[
            "id"
        ]
        for i in range(5)
    ]
    page = await api.ok("GET", f"/threads/{tid}/messages?limit=2")
    assert page["object"] == "list"
    assert [m["id"] for m in page["data"]] == ids[::-1][:2]
    assert page["first_id"] == ids[4] and page["last_id"] == ids[3] and page["has_more"]
    page = await api.ok("GET", f"/threads/{tid}/messages?limit=2&after={ids[3]}")
    assert [m["id"] for m in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    page = await api.ok("GET", f"/threads/{tid}/messages?order=asc&after={ids[2]}")
    assert [m["id"] for m in page["data"]] == ids[3:] and not page["has_more"]
    page = await api.ok("GET", f"/threads/{tid}/messages?order=asc&limit=1&before={ids[3]}")
    assert [m["id"] for m in page["data"]] == [ids[2]] and page["has_more"]
    empty = await api.ok("GET", f"/threads/{tid}/runs")
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    queries = ("limit=0", "limit=101", "limit=x", "limit=1_0", "limit=%EF%BC%95", "limit=%2B5")
    for query in (*queries, "order=up", "after=msg_unknown"):
        status, data, _ = await api.call("GET", f"/threads/{tid}/messages?{query}")
        assert_error(status, data, 400)
