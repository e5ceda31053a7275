"""Snapshot reducers for the hub: :class:`parsers.accumulate.RunAccumulator` behind ``Reducer``.

The hub calls ``apply`` with every published :class:`~gateway.hub.HubEvent` (name and raw data
bytes) and serves ``snapshot()`` with the seq it reflects. Reducers work from those bytes alone,
so a broker on another node can rebuild the same state from history; in process they reuse the
relay's typed event (``HubEvent.decoded``) instead of parsing the bytes a second time.

- ``run:{run_id}`` channels fold their run, across every HTTP stream it spans.
- ``thread:{thread_id}`` channels fold the thread's current run: a run event for another run
  (or a ``thread.created``) starts a fresh accumulator, so a chat UI joining the thread mid-answer
  gets the answer so far.

``runcast.*`` events and payloads that do not decode are skipped (never fatal to the channel).
Both report ``nbytes``, the accumulator's estimate of what they hold, which the hub charges to its
memory budget (``gateway.hub.budget``).
"""

from __future__ import annotations

from typing import cast

from gateway.hub import HubEvent, Reducer
from parsers.accumulate import RunAccumulator, encode_snapshot
from parsers.assistants import AssistantStreamEvent, decode_event
from parsers.assistants.signals import signal
from parsers.errors import EventDecodeError
from parsers.signals import GroupSeen, RunSeen
from parsers.sse import ServerSentEvent

__all__ = ["RunReducer", "ThreadReducer", "reducer_factory"]


def _decode(event: HubEvent) -> AssistantStreamEvent | None:
    if event.name.startswith("runcast."):
        return None
    if event.decoded is not None:
        # The relay's own typed event (same process): no second parse. Only the relay sets it.
        return cast("AssistantStreamEvent", event.decoded)
    try:
        return decode_event(ServerSentEvent(event=event.name, data_bytes=event.data))
    except EventDecodeError:
        return None


class RunReducer:
    """The snapshot of one run channel."""

    __slots__ = ("_acc",)

    def __init__(self) -> None:
        self._acc = RunAccumulator()

    def apply(self, event: HubEvent) -> None:
        typed = _decode(event)
        if typed is not None:
            self._acc.apply(typed, len(event.data))

    @property
    def nbytes(self) -> int:
        return self._acc.nbytes

    def snapshot(self) -> bytes:
        return encode_snapshot(self._acc.snapshot())


class ThreadReducer:
    """The snapshot of a thread channel: its current (latest) run."""

    __slots__ = ("_acc", "_run_id")

    def __init__(self) -> None:
        self._acc = RunAccumulator()
        self._run_id: str | None = None

    def apply(self, event: HubEvent) -> None:
        typed = _decode(event)
        if typed is None:
            return
        sig = signal(typed)
        if isinstance(sig, GroupSeen):
            self._acc = RunAccumulator()
            self._run_id = None
        elif isinstance(sig, RunSeen) and sig.run_id != self._run_id:
            if self._run_id is not None:
                self._acc = RunAccumulator()
            self._run_id = sig.run_id
        self._acc.apply(typed, len(event.data))

    @property
    def nbytes(self) -> int:
        return self._acc.nbytes

    def snapshot(self) -> bytes:
        return encode_snapshot(self._acc.snapshot())


def reducer_factory(channel: str) -> Reducer | None:
    """The hub's ``ReducerFactory``: run and thread channels get snapshots, others none."""
    if channel.startswith("run:"):
        return RunReducer()
    if channel.startswith("thread:"):
        return ThreadReducer()
    return None
