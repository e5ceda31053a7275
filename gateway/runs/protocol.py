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
- how to cancel a run (:meth:`RunProtocol.cancel`; the tools' ``Cancel``);
- how to learn a run's state and recover after a broken stream (:meth:`RunProtocol.fetch_run`,
  :meth:`RunProtocol.poll_settled`, :meth:`RunProtocol.recover`; Assistants: poll the run);
- how a channel's snapshot is folded (:meth:`RunProtocol.reducer`), and what a run's channel
  already holds when another node takes the run over (:meth:`RunProtocol.published`);
- what a run held at an action asks (:meth:`RunProtocol.held_action`: a neutral
  :class:`~gateway.runs.actions.HeldAction`, built once per action, is all the relay, the
  answerer and the tool automation read of it).

The generic modules never name the run object's type: ``RunT`` is opaque to them, handed from
the protocol's stream reader (``RunSeen.run``) or :meth:`RunProtocol.decode_run` back to the
protocol.

Assistants (``gateway.runs.assistants``) is the one implementation so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from gateway.hub import Broker, HubEvent, Reducer
from gateway.upstream import RunStream, UpstreamClient

from .actions import HeldAction
from .missed import FinalIds
from .recovery import Recovery
from .takeover import Published

__all__ = ["RunProtocol"]

RunT = TypeVar("RunT")


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

    def held_action(self, run: RunT) -> HeldAction:
        """What a run waiting at :attr:`action_status` asks, as the generic code reads it."""
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

    async def cancel(
        self, upstream: UpstreamClient, group_id: str, run_id: str, *, api_key: str | None
    ) -> None:
        """Ask the upstream to cancel the run (its errors raised as ``UpstreamError``)."""
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

    async def published(self, broker: Broker, run_id: str) -> Published:
        """What the run's channel already holds in the shared log (a taker reads it)."""
        ...

    def reducer(self, channel: str) -> Reducer | None:
        """The snapshot reducer of one of this protocol's channels (None: no snapshot)."""
        ...
