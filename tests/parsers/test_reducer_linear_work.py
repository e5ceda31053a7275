"""The snapshot reducers do a bounded amount of work per event, however many items came before.

Work is counted, not timed: ids are a ``str`` subclass that counts its comparisons and fails once
a stream of ``N`` events has made more than a few per event (a scan of every earlier call or slot
makes about N * N / 2)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

import parsers.chat as pc
import parsers.responses as pr

N = 20_000
BUDGET = 8 * N


def counted_ids(budget: int) -> Callable[[str], str]:
    """A factory of ids whose comparisons, all together, fail past ``budget``."""
    count = 0

    class CountedId(str):
        __hash__ = str.__hash__

        def __eq__(self, other: object) -> bool:
            nonlocal count
            count += 1
            if count > budget:
                raise AssertionError(f"more than {budget} id comparisons for {N} events")
            return str.__eq__(self, other)

    return CountedId


def new_call(call_id: str) -> pc.ChatCompletionChunk:
    """A tool call of its own, numbered 0 like every other (servers that number every call 0)."""
    call = pc.ToolCallDelta(
        index=0, id=call_id, function=pc.FunctionDelta(name="f", arguments="{}")
    )
    delta = pc.ChoiceDelta(tool_calls=[call])
    return pc.ChatCompletionChunk(id="c", choices=[pc.ChunkChoice(index=0, delta=delta)])


def test_chat_calls_with_new_ids_at_one_index_cost_a_few_comparisons_each() -> None:
    ids = counted_ids(BUDGET)
    acc = pc.ChatAccumulator()
    for i in range(N):
        acc.apply(new_call(ids(f"call_{i}")))
    # The same calls with plain ids (a snapshot encodes only plain str): one call each.
    plain = pc.ChatAccumulator()
    for i in range(N):
        plain.apply(new_call(f"call_{i}"))
    calls = plain.snapshot()["completion"]["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == [f"call_{i}" for i in range(N)]


def test_chat_an_id_given_to_two_calls_names_the_first_one() -> None:
    """As the scan did: a late id that another call already has leaves the earlier call named."""
    entries = [
        {"index": 0, "function": {"name": "f", "arguments": "a"}},
        {"index": 1, "id": "call_x", "function": {"name": "g", "arguments": "b"}},
        {"index": 0, "id": "call_x", "function": {"arguments": "c"}},
        {"id": "call_x", "function": {"arguments": "d"}},
    ]
    acc = pc.ChatAccumulator()
    for entry in entries:
        delta = pc.ChoiceDelta(tool_calls=[msgspec.convert(entry, pc.ToolCallDelta)])
        acc.apply(pc.ChatCompletionChunk(choices=[pc.ChunkChoice(delta=delta)]))
    calls = acc.snapshot()["completion"]["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("call_x", "acd"),
        ("call_x", "b"),
    ]


def item_and_delta(item_id: str, index: int) -> list[pr.ResponseStreamEvent]:
    item = {"id": str(item_id), "type": "message", "role": "assistant", "content": []}
    return [
        pr.OutputItemAddedEvent(output_index=index, item=item),
        pr.OutputTextDeltaEvent(item_id=item_id, output_index=index, content_index=0, delta="x"),
    ]


def test_responses_items_with_a_delta_each_cost_a_few_comparisons_each() -> None:
    ids = counted_ids(BUDGET)
    acc = pr.ResponseAccumulator()
    for i in range(N):
        for event in item_and_delta(ids(f"msg_{i}"), i):
            acc.apply(event)
    output = acc.snapshot()["response"]["output"]
    assert [item["id"] for item in output] == [f"msg_{i}" for i in range(N)]
    assert all(
        item["content"] == [{"type": "output_text", "text": "x", "annotations": []}]
        for item in output
    )


def test_responses_annotations_cost_a_few_comparisons_each() -> None:
    """An annotation wrote every item's growing strings, so N annotations scanned N slots each."""
    ids = counted_ids(BUDGET)
    output = [
        {"id": f"msg_{i}", "type": "message", "role": "assistant", "content": []} for i in range(N)
    ]
    acc = pr.ResponseAccumulator()
    acc.apply(pr.ResponseInProgressEvent(response=pr.Response(id="resp_1", output=output)))
    annotation = {"type": "url_citation", "url": "https://example.com"}
    for i in range(N):
        item_id = ids(f"msg_{i}")
        acc.apply(
            pr.OutputTextDeltaEvent(item_id=item_id, output_index=i, content_index=0, delta="x")
        )
        acc.apply(
            pr.OutputTextAnnotationAddedEvent(
                item_id=item_id, output_index=i, content_index=0, annotation=annotation
            )
        )
    parts = [item["content"] for item in acc.snapshot()["response"]["output"]]
    assert parts == [[{"type": "output_text", "text": "x", "annotations": [annotation]}]] * N
