"""Runs being pumped right now, for failover: :class:`LiveRuns` and its in-memory form.

A relay that owns a run records it here (:meth:`LiveRuns.put`) with its lease's expiry, moves
that expiry on each renewal (:meth:`LiveRuns.touch`) and removes the run when it stops pumping it
for good (the run ended, or was left to the client at an action). A run whose recorded expiry
has passed is one whose owner stopped renewing without ending it (a killed process): the
takeover watcher (``gateway.runs.takeover``) lists those (:meth:`LiveRuns.expired`) and one node
takes each over, deciding by acquiring the run's lease.

A Responses or Chat stream is recorded the same way under its own channel's name (its lease's
key), with a :class:`LiveStream` saying what a taker needs to carry it on or end it.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["LiveRun", "LiveRuns", "LiveStream", "MemoryLiveRuns"]


class LiveStream(msgspec.Struct, frozen=True, kw_only=True):
    """A live Responses or Chat stream (the record's ``run_id`` is its own channel)."""

    kind: str
    """``response`` or ``chat``."""
    object_id: str
    channels: tuple[str, ...] = ()
    """The other channels it publishes to (its conversation's, a named one)."""
    resumable: bool = False
    """A background response: the upstream can go on streaming it after a cursor."""
    stored: bool = True
    """Not created with ``store: false``: the finished object can be read."""
    chain: bool = False
    """A tool chain is under way after the stream's end (its handlers ran or run): a node
    taking it over tells its channels the chain is lost instead of only closing them."""


class LiveRun(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    """The run's id, or a stream's own channel name (its lease key)."""
    thread_id: str
    api_key: str | None
    """The key the run was created with: reading it needs the same project."""
    expires_at: float
    """Unix time the owner's lease runs out unless renewed."""
    stream: LiveStream | None = None
    """Set for a Responses or Chat stream (None: an Assistants run)."""


class LiveRuns(Protocol):
    async def put(self, run: LiveRun) -> None:
        """Record ``run`` (replacing any record of the same run)."""
        ...

    async def touch(self, run_id: str, expires_at: float) -> None:
        """Move a recorded run's expiry (nothing if it is not recorded)."""
        ...

    async def remove(self, run_id: str) -> None: ...

    async def expired(self, now: float, *, limit: int) -> list[LiveRun]:
        """Up to ``limit`` recorded runs whose expiry is at or before ``now``, oldest first."""
        ...


class MemoryLiveRuns:
    """:class:`LiveRuns` for one process (nobody else can take a run over; kept for tests)."""

    def __init__(self) -> None:
        self._runs: dict[str, LiveRun] = {}

    def __len__(self) -> int:
        return len(self._runs)

    async def put(self, run: LiveRun) -> None:
        self._runs[run.run_id] = run

    async def touch(self, run_id: str, expires_at: float) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            self._runs[run_id] = msgspec.structs.replace(run, expires_at=expires_at)

    async def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    async def expired(self, now: float, *, limit: int) -> list[LiveRun]:
        due = sorted(
            (run for run in self._runs.values() if run.expires_at <= now),
            key=lambda run: run.expires_at,
        )
        return due[:limit]
