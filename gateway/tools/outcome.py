"""What tool automation decided for one ``requires_action``: submit, leave it, or cancel the run.

``ActionOutcome = Submit | Skip | Cancel``, a tagged union of frozen Structs:

- :class:`Submit`: POST ``request_body()`` to ``.../runs/{run_id}/submit_tool_outputs`` once
  (it carries ``"stream": true``, spec §1.3) and splice the continuation; never after
  ``not_after`` (the action's ``expires_at``, spec §5).
- :class:`Skip`: runcast does not answer this action; pass ``requires_action`` to the client.
- :class:`Cancel`: cancel the run (``POST .../runs/{run_id}/cancel``); ``reason`` says why.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from .executor import CallResult

__all__ = ["ActionOutcome", "Cancel", "Skip", "Submit", "ToolOutput"]


class ToolOutput(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``SubmitToolOutputsRunRequest.tool_outputs`` (spec §1.3)."""

    tool_call_id: str
    output: str


class _SubmitBody(msgspec.Struct, frozen=True, kw_only=True):
    tool_outputs: tuple[ToolOutput, ...]
    stream: bool


_encode = msgspec.json.Encoder().encode


class Submit(msgspec.Struct, frozen=True, kw_only=True, tag="submit"):
    """Submit these outputs, one per pending call, in the calls' order."""

    tool_outputs: tuple[ToolOutput, ...]
    results: tuple[CallResult, ...] = ()
    """Per-call details (ok, error, duration) for logs; not part of the request."""
    round: int = 1
    """1 for the run's first automated submission, 2 for the next..."""
    not_after: float | None = None
    """Unix time after which submitting is pointless (the action's ``expires_at``)."""

    def request_body(self, *, stream: bool = True) -> bytes:
        """The JSON body of ``POST .../submit_tool_outputs``."""
        return _encode(_SubmitBody(tool_outputs=self.tool_outputs, stream=stream))

    def as_dicts(self) -> list[dict[str, str]]:
        """``tool_outputs`` as plain dicts (a fresh list each call)."""
        return [{"tool_call_id": o.tool_call_id, "output": o.output} for o in self.tool_outputs]


class Skip(msgspec.Struct, frozen=True, kw_only=True, tag="skip"):
    """Leave the action to the client."""

    reason: str


class Cancel(msgspec.Struct, frozen=True, kw_only=True, tag="cancel"):
    """Cancel the run; ``reason`` is for logs and subscribers."""

    reason: str


ActionOutcome: TypeAlias = Submit | Skip | Cancel
