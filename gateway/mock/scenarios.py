"""The simulator's scenarios as data: what each run does, read by the engine (``driver.py``).

The Responses and Chat drivers (``responses/driver.py``, ``chat/driver.py``) play the same
scenarios in their protocols; the table below is the Assistants behaviour.

A run picks its scenario from ``metadata["mock_scenario"]``; the server's ``--scenario`` is the
default, an unknown name is a 400 (``param: "metadata"``).

==================== ==========================================================================
``text``             a streamed answer: ``deltas`` deltas, then completed (spec §2.2)
``tool_call``        calls the run's first function tool with arguments built from its JSON
                     Schema, ends in ``requires_action``; after the outputs, the answer
``parallel_tool_calls`` one call to every function tool of the run, in one action
``multi_round``      two successive actions (first tool, then the next one), then the answer
``error``            half the deltas, then ``event: error`` (bare Error, spec §2.4) and the end
                     of the body without ``done``; the run fails server-side
``failed``           half the deltas, then ``thread.run.failed`` with ``last_error``
``incomplete``       all deltas, message ``incomplete``, then ``thread.run.incomplete``
``drop``             half the deltas, then the TCP connection closes mid-body; the run carries
                     on and completes server-side
``drop_mid_tool_call`` as ``tool_call``, but the connection closes after the first fragment of the
                     call's arguments; the run carries on server-side to ``requires_action``
``drop_after_requires_action`` as ``tool_call``, but the connection closes right after
                     ``thread.run.requires_action`` (no ``done``)
``slow_start``       nothing (not even the status line) for ``slow_start_ms``, then ``text``; a
                     non-streamed create answers at once and the run stays queued that long
``rate_limited``     HTTP 429 with ``Retry-After`` and the error body; no run is created
``server_error``     HTTP 500 with the error body; no run is created
==================== ==========================================================================

In every tool scenario the answer quotes, verbatim, each output submitted during the run (one
delta per output, before the generated text). Fallback: a tool scenario on a run without any
function tool (neither in the run's ``tools`` nor its assistant's) runs as ``text``, since there
is nothing to call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import msgspec

from gateway.mock.requests import FunctionDefinition, FunctionTool, Tool

__all__ = [
    "SCENARIOS",
    "Scenario",
    "answer_preamble",
    "function_tools",
    "round_tools",
    "scenario_for_run",
]

Ending = Literal["completed", "incomplete", "failed", "error", "drop"]
DropPoint = Literal["tool_arguments", "requires_action"]

METADATA_KEY = "mock_scenario"


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    tool_rounds: int = 0
    parallel: bool = False
    ending: Ending = "completed"
    slow_start: bool = False
    http_status: int | None = None
    drop_at: DropPoint | None = None
    """Where the first stream's connection is cut in a tool round (``ending="drop"`` cuts the
    answer's text instead); the run carries on server-side either way."""


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario(name="text"),
            Scenario(name="tool_call", tool_rounds=1),
            Scenario(name="parallel_tool_calls", tool_rounds=1, parallel=True),
            Scenario(name="multi_round", tool_rounds=2),
            Scenario(name="error", ending="error"),
            Scenario(name="failed", ending="failed"),
            Scenario(name="incomplete", ending="incomplete"),
            Scenario(name="drop", ending="drop"),
            Scenario(name="drop_mid_tool_call", tool_rounds=1, drop_at="tool_arguments"),
            Scenario(name="drop_after_requires_action", tool_rounds=1, drop_at="requires_action"),
            Scenario(name="slow_start", slow_start=True),
            Scenario(name="rate_limited", http_status=429),
            Scenario(name="server_error", http_status=500),
        )
    }
)


def requested_scenario(metadata: Mapping[str, str] | None, default: str) -> Scenario | None:
    """The scenario a run asks for, or None when its ``mock_scenario`` names no scenario."""
    name = (metadata or {}).get(METADATA_KEY, default)
    return SCENARIOS.get(name)


def function_tools(tools: Sequence[Tool]) -> list[FunctionDefinition]:
    return [tool.function for tool in tools if isinstance(tool, FunctionTool)]


def scenario_for_run(scenario: Scenario, tools: Sequence[FunctionDefinition]) -> Scenario:
    """Apply the no-function-tool fallback (module docstring)."""
    if scenario.tool_rounds and not tools:
        return SCENARIOS["text"]
    return scenario


def round_tools(
    scenario: Scenario, tools: Sequence[FunctionDefinition], round_no: int
) -> list[FunctionDefinition]:
    """The tools called in tool round ``round_no`` (0-based).

    ``parallel_tool_calls`` calls every function tool at once; the others call one: the first
    function tool in round 0, the next one (wrapping around) in later rounds.
    """
    if scenario.parallel:
        return list(tools)
    return [tools[round_no % len(tools)]]


def answer_preamble(outputs: Sequence[tuple[str, str]]) -> list[str]:
    """Fragments that quote, verbatim, every ``(tool name, output)`` submitted during the run."""
    return [f"{name} returned: {output}\n\n" for name, output in outputs]
