"""Tool rounds per run: :class:`ToolRounds` and its in-memory form.

Tool automation counts the submissions it made for each run (to enforce ``max_rounds``) and
remembers the action it is answering (so the same action is never answered twice). Updates are
compare-and-swap, so two gateway processes cannot both start answering one action. Bounded:
past ``max_runs`` the runs touched longest ago are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import msgspec

__all__ = ["MemoryToolRounds", "RoundState", "ToolRounds"]


class RoundState(msgspec.Struct, frozen=True, kw_only=True):
    rounds: int = 0
    """Submissions made so far."""
    last_action: tuple[str, ...] | None = None
    """The tool call ids of the action being (or last) answered; for a stream chain, after the
    id of the stream that asked for them."""


class ToolRounds(Protocol):
    """run id -> :class:`RoundState`."""

    def __len__(self) -> int:
        """Runs held (statistics)."""
        ...

    async def get(self, run_id: str) -> RoundState:
        """The run's state (the initial one if unknown)."""
        ...

    async def swap(self, run_id: str, expected: RoundState, new: RoundState) -> bool:
        """Store ``new`` if the run's state still equals ``expected``; False otherwise."""
        ...

    async def forget(self, run_id: str) -> None:
        """The run is over: its state may go."""
        ...


class MemoryToolRounds:
    """:class:`ToolRounds` for one process."""

    def __init__(self, *, max_runs: int = 10_000) -> None:
        self._max_runs = max_runs
        self._runs: OrderedDict[str, RoundState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    async def get(self, run_id: str) -> RoundState:
        state = self._runs.get(run_id)
        if state is None:
            return RoundState()
        self._runs.move_to_end(run_id)
        return state

    async def swap(self, run_id: str, expected: RoundState, new: RoundState) -> bool:
        if self._runs.get(run_id, RoundState()) != expected:
            return False
        self._runs[run_id] = new
        self._runs.move_to_end(run_id)
        while len(self._runs) > self._max_runs:
            self._runs.popitem(last=False)
        return True

    async def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
