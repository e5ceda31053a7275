"""Non-streamed JSON answers decoded into the parsers' models, tolerant like the stream."""

from __future__ import annotations

import orjson
import pytest

from gateway.upstream.assistants.objects import decode_message_page, decode_run, decode_step_page
from parsers.assistants import UnknownVariant
from parsers.errors import RemoteProtocolError

from .servers import fixture_bytes


def run_payload_from_fixture() -> bytes:
    raw = fixture_bytes("B1-requires-action.sse")
    start = raw.index(b"data: ", raw.index(b"event: thread.run.requires_action")) + 6
    return raw[start : raw.index(b"\n", start)]


def test_run_from_json() -> None:
    run = decode_run(run_payload_from_fixture())
    assert run.status == "requires_action"
    assert run.required_action is not None


def test_unknown_union_members_are_tolerated() -> None:
    payload = orjson.loads(run_payload_from_fixture())
    payload["tools"] = [{"type": "web_browser", "extra": 1}]
    payload["brand_new_field"] = {"x": 1}
    run = decode_run(orjson.dumps(payload))
    assert isinstance(run.tools[0], UnknownVariant)
    assert run.tools[0].original_type == "web_browser"


@pytest.mark.parametrize("body", [b"not json", b'{"id": 5, "object": "thread.run"}', b"[]"])
def test_bodies_that_are_not_a_run(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_run(body)


def test_pages() -> None:
    message = {"id": "msg_1", "object": "thread.message", "role": "assistant", "content": []}
    page = decode_message_page(
        orjson.dumps({"object": "list", "data": [message], "has_more": True})
    )
    assert [m.id for m in page.data] == ["msg_1"] and page.has_more and page.first_id is None
    step = {
        "id": "s",
        "object": "thread.run.step",
        "type": "future_kind",
        "step_details": {"type": "future_kind"},
    }
    steps = decode_step_page(orjson.dumps({"data": [step]}))
    assert steps.data[0].id == "s"
    with pytest.raises(RemoteProtocolError):
        decode_message_page(b'{"data": {}}')
