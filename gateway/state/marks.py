"""Where runcast's own submission of an action's outputs stands: :class:`SubmissionMarks`.

The owner of a run marks ``submitting`` (with the action's tool call ids) before it posts the
outputs and ``submitted`` once the upstream accepted them. A node taking over a run whose owner
died reads the mark to decide whether it may submit again (``gateway.runs.takeover``): the POST
has no idempotency key, so a mark left at ``submitting`` means the outputs may have been taken.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

__all__ = ["MemorySubmissionMarks", "SubmissionMark", "SubmissionMarks", "SubmitState"]

SubmitState = Literal["submitting", "submitted"]


class SubmissionMark(msgspec.Struct, frozen=True, kw_only=True):
    call_ids: tuple[str, ...]
    state: SubmitState


class SubmissionMarks(Protocol):
    async def mark(self, run_id: str, call_ids: tuple[str, ...], state: SubmitState) -> None:
        """Record ``state`` for the action with ``call_ids`` (replacing the run's mark)."""
        ...

    async def get(self, run_id: str) -> SubmissionMark | None: ...

    async def forget(self, run_id: str) -> None: ...


class MemorySubmissionMarks:
    """:class:`SubmissionMarks` for one process; bounded (oldest marks dropped first)."""

    def __init__(self, *, max_runs: int = 100_000) -> None:
        self._marks: dict[str, SubmissionMark] = {}
        self._max_runs = max_runs

    def __len__(self) -> int:
        return len(self._marks)

    async def mark(self, run_id: str, call_ids: tuple[str, ...], state: SubmitState) -> None:
        self._marks.pop(run_id, None)
        while len(self._marks) >= self._max_runs:
            del self._marks[next(iter(self._marks))]
        self._marks[run_id] = SubmissionMark(call_ids=call_ids, state=state)

    async def get(self, run_id: str) -> SubmissionMark | None:
        return self._marks.get(run_id)

    async def forget(self, run_id: str) -> None:
        self._marks.pop(run_id, None)
