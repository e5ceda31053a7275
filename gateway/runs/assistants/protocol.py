"""The Assistants API behind the protocol seam: :data:`ASSISTANTS`, a
:class:`~gateway.runs.protocol.RunProtocol` over ``thread.run.*`` streams.

Runs live in threads; ``requires_action`` is continued by streaming ``submit_tool_outputs`` on
the same run (spec §2.3, §5); a segment ends with ``done``; a broken stream is recovered by
polling the run (``recovery.py``, ``missed.py``); snapshots fold the run, or a thread's current
run (``reducer.py``), and a taker reads what a run's channel holds (``published.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway.hub import Broker, HubEvent, Reducer
from gateway.upstream import RunStream, UpstreamClient
from gateway.upstream.assistants.objects import decode_run
from parsers.assistants import TERMINAL_RUN_STATUSES, Run
from parsers.assistants.signals import ACTION_STATUS

from ..actions import HeldAction
from ..missed import FinalIds
from ..recovery import Recovery
from ..takeover import Published
from .published import published_state
from .recovery import poll_settled_run, recover_run
from .reducer import reducer_factory
from .runs import DONE, fetch_run, held_action, settled_event

__all__ = ["ASSISTANTS", "AssistantsProtocol"]


class AssistantsProtocol:
    """:class:`~gateway.runs.protocol.RunProtocol` for the Assistants API (stateless)."""

    terminal_statuses: frozenset[str] = TERMINAL_RUN_STATUSES
    action_status: str = ACTION_STATUS
    end_of_segment: HubEvent = DONE

    def decode_run(self, data: bytes) -> Run:
        return decode_run(data)

    def held_action(self, run: Run) -> HeldAction:
        return held_action(run)

    def settled_event(self, status: str, data: bytes) -> HubEvent:
        return settled_event(status, data)

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
        return upstream.stream_submit_tool_outputs(
            group_id, run_id, outputs, api_key=api_key, headers=headers
        )

    async def cancel(
        self, upstream: UpstreamClient, group_id: str, run_id: str, *, api_key: str | None
    ) -> None:
        await upstream.cancel_run(group_id, run_id, api_key=api_key)

    async def fetch_run(
        self, upstream: UpstreamClient, group_id: str, run_id: str, *, api_key: str | None
    ) -> tuple[str, bytes] | None:
        return await fetch_run(upstream, group_id, run_id, api_key=api_key)

    async def poll_settled(
        self,
        upstream: UpstreamClient,
        group_id: str,
        run_id: str,
        *,
        within: float,
        api_key: str | None,
    ) -> tuple[str, bytes] | None:
        return await poll_settled_run(upstream, group_id, run_id, within=within, api_key=api_key)

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
        return await recover_run(upstream, group_id, run_id, seen, within=within, api_key=api_key)

    async def published(self, broker: Broker, run_id: str) -> Published:
        return await published_state(broker, run_id)

    def reducer(self, channel: str) -> Reducer | None:
        return reducer_factory(channel)


ASSISTANTS: Final = AssistantsProtocol()
