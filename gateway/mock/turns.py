"""Where a conversation stands in its current turn, read from its items or messages.

The Responses and Chat simulators are driven by what the client sends back: a turn starts at the
last user message; each model reply with function calls is one tool round, answered by one output
per call (a ``function_call_output`` item, or a ``tool`` message). :class:`Turn` folds those in
order and says how many rounds are done, which outputs the final answer must quote (with the name
of the function each answers, as the Assistants simulator quotes them), and which calls are still
unanswered (OpenAI answers those with a 400, reference responses-and-chat.md §3.3).
"""

from __future__ import annotations

__all__ = ["Turn"]


class Turn:
    """The tool rounds of the current turn; feed it items in conversation order."""

    __slots__ = ("_names", "_open", "quoted", "rounds", "unknown")

    def __init__(self) -> None:
        self.rounds = 0
        self.quoted: list[tuple[str, str]] = []
        self.unknown: list[str] = []  # outputs answering no call of this turn
        self._names: dict[str, str] = {}  # call_id -> function name, this turn
        self._open: dict[str, None] = {}  # call ids still without an output, in call order

    def user(self) -> None:
        """A user message: a new turn starts. Calls still open stay so: a message after them
        does not answer them, and the API refuses the request."""
        self.rounds = 0
        self.quoted = []
        self.unknown = []
        self._names = {}

    def calls(self, calls: list[tuple[str, str]]) -> None:
        """One model reply calling ``(call_id, name)`` functions: one round."""
        if not calls:
            return
        self.rounds += 1
        for call_id, name in calls:
            self._names[call_id] = name
            self._open[call_id] = None

    def output(self, call_id: str, output: str) -> None:
        name = self._names.get(call_id)
        if name is None:
            self.unknown.append(call_id)
            return
        self._open.pop(call_id, None)
        self.quoted.append((name, output))

    @property
    def unanswered(self) -> list[str]:
        return list(self._open)

    def copy(self) -> Turn:
        other = Turn()
        other.rounds = self.rounds
        other.quoted = list(self.quoted)
        other.unknown = list(self.unknown)
        other._names = dict(self._names)
        other._open = dict(self._open)
        return other
