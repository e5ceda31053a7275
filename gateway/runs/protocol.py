"""The protocol seam: :class:`RunProtocol`, everything the run lifecycle asks of an upstream API.

The relay, the action answerer, the expiry watcher and the hub's snapshots never match an
upstream's event types or build its URLs; they ask the run's protocol:

- what an event means: each item of the protocol's stream reader carries its signal (run id
  and status, thread or conversation, final items, the end-of-stream marker; see
  ``parsers.signals``), worked out once per event; which statuses end a run
  (``terminal_statuses``), which one waits for an action (``action_status``);
- how a segment ends on the channels (``end_of_segment``, synthesized only by the protocol) and
  how a learnt run state is published (:meth:`RunProtocol.settled_event`);
- how to continue after an action (:meth:`RunProtocol.continue_run`; Assistants: stream
  ``submit_tool_outputs`` on the same run);
- how to learn a run's state and recover after a broken stream (:meth:`RunProtocol.fetch_run`,
  :meth:`RunProtocol.poll_settled`, :meth:`RunProtocol.recover`; Assistants: poll the run);
- how a channel's snapshot is folded (:meth:`RunProtocol.reducer`).

Assistants (``gateway.runs.assistants``) is the one implementation so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from gateway.hub import HubEvent, Reducer
from gateway.upstream import RunStream, UpstreamClient

from .missed import FinalIds
from .recovery import Recovery

__all__ = ["RunProtocol"]

RunT = TypeVar("RunT", covariant=True)


class RunProtocol(Protocol[RunT]):
    """One upstream API as the run lifecycle sees it; ``RunT`` is its run object."""

    terminal_statuses: frozenset[str]
    """Statuses after which the run never changes again."""
    action_status: str
    """The status of a run waiting for the caller's action (tool outputs)."""
    end_of_segment: HubEvent
    """Ends every upstream response's segment on the channels."""

    def decode_run(self, data: bytes) -> RunT:
        """A run object from its JSON (``RemoteProtocolError`` when it is not one)."""
        ...

    def settled_event(self, status: str, data: bytes) -> HubEvent:
        """The event that publishes a run's state learnt out of band (polled)."""
        ...

    def continue_run(
        self,
        upstream: UpstreamClient,
        group_id: str,
        run_id: str,
        outputs: Sequence[Mapping[str, Any]],
        *,
        api_key: str | None,
        headers: Mapping[str, str],
    ) -> RunStream:
        """The (unopened) stream that continues a run waiting at an action with ``outputs``."""
        ...

    async def fetch_run(
        self, upstream: UpstreamClient, group_id: str, run_id: str, *, api_key: str | None
    ) -> tuple[str, bytes] | None:
        """``(status, run JSON)`` from one read; None if it cannot be learnt."""
        ...

    async def poll_settled(
        self,
        upstream: UpstreamClient,
        group_id: str,
        run_id: str,
        *,
        within: float,
        api_key: str | None,
    ) -> tuple[str, bytes] | None:
        """``(status, run JSON)`` once the run waits or has ended, None past ``within`` seconds."""
        ...

    async def recover(
        self,
        upstream: UpstreamClient,
        group_id: str,
        run_id: str,
        seen: FinalIds,
        *,
        within: float,
        api_key: str | None,
    ) -> Recovery | None:
        """After a broken stream: the run once settled, and the final items ``seen`` lacks."""
        ...

    def reducer(self, channel: str) -> Reducer | None:
        """The snapshot reducer of one of this protocol's channels (None: no snapshot)."""
        ...
