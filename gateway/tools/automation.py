"""The seam between the gateway's run relay and tool automation: ``ToolAutomation``.

Lifecycle: construct with settings (and optionally a registry built in code), ``await start()``
(sets up the sync handlers' threads and, when webhooks are configured, the one aiohttp session), and
``await aclose()`` at shutdown. In between, for every ``thread.run.requires_action`` it sees::

    outcome = await automation.run_action(action, emit)   # a gateway.runs.actions.HeldAction
    match outcome:
        case Submit():  stream outcome.as_dicts() to .../submit_tool_outputs, splice it in
        case Skip():    pass requires_action (and the done after it) to the client unchanged
        case Cancel():  POST .../runs/{id}/cancel; outcome.reason says why

Responses and Chat Completions streams that end with function calls are answered through
:meth:`ToolAutomation.answer_calls` (``gateway/runs/protocols/toolchain.py`` posts the follow-up),
with the same handlers, rules and events, rounds counted per chain of streams. There the same
calls are those of the same stream: each round is a new upstream response, and servers that
number their calls per round (``call_0`` every round) repeat ids across rounds; a model that
loops is stopped by ``max_rounds``.

Rounds are counted per run to enforce ``max_rounds`` (spec §5: a continuation may end in
``requires_action`` again). The same action (same run, same call ids) is answered only once:
a second ``run_action`` for it returns ``Skip``, so the outputs cannot be submitted twice. An
action whose calls do not each have an id of their own (an empty one, or two calls sharing one)
is skipped with ``runcast.tool_automation.skipped``, as a Responses or Chat round is.
The per-run state (a :class:`~gateway.state.ToolRounds`, in-memory unless given) is bounded
(oldest runs forgotten first); ``forget(run_id)`` drops it at once when the run ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import aiohttp
import msgspec

from gateway.errors import ConfigError
from gateway.state import MemoryToolRounds, RoundState, ToolRounds

from . import events
from .events import Emit, publish
from .executor import ExecutorStatistics, PendingCall, ToolExecutor
from .handlers import Handler, HandlerThreads, PythonHandler
from .outcome import ActionOutcome, Cancel, Skip, Submit, ToolOutput
from .registry import ToolRegistry
from .settings import FALLBACK, ToolSettings
from .webhook import WebhookHandler

if TYPE_CHECKING:
    from gateway.runs.actions import HeldAction

__all__ = ["AutomationStatistics", "ToolAutomation"]

log = logging.getLogger("runcast.tools")

_MAX_TRACKED_RUNS = 10_000

UNPLACEABLE = "the upstream gave a call no id, or two calls one id"
"""Why calls are left to the application when their ids cannot each take one output: outputs
are matched to calls by id (spec §1.3, one output per pending ``tool_call_id``), so answering
them would run a tool twice, or send outputs the upstream cannot place."""


def _placeable(call_ids: Sequence[str]) -> bool:
    return all(call_ids) and len(set(call_ids)) == len(call_ids)


class AutomationStatistics(msgspec.Struct, frozen=True, kw_only=True):
    tracked_runs: int
    """Runs whose round count is kept (bounded; ``forget`` drops one)."""
    stuck_threads: int
    """Sync handlers still running after their call timed out or was cancelled."""
    executor: ExecutorStatistics


class ToolAutomation:
    """Answers ``requires_action`` with Python handlers and webhooks. One per gateway.

    ``registry`` is copied, then ``settings.modules`` are imported into the copy; add handlers
    later through ``automation.registry``. ``clock`` gives Unix time (the unit of ``expires_at``).
    """

    def __init__(
        self,
        settings: ToolSettings,
        registry: ToolRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_tracked_runs: int = _MAX_TRACKED_RUNS,
        on_call: Callable[[str, float], None] | None = None,
        rounds: ToolRounds | None = None,
    ) -> None:
        self.settings = settings
        self.registry = ToolRegistry()
        if registry is not None:
            for name in registry:
                fn = registry.get(name)
                assert fn is not None
                self.registry.register(fn, name=name)
        for module in settings.modules:
            self.registry.add_module(module)
        self._check_handlers()
        self._clock = clock
        self._rounds = MemoryToolRounds(max_runs=max_tracked_runs) if rounds is None else rounds
        self._threads: HandlerThreads | None = None
        self._session: aiohttp.ClientSession | None = None
        self._python: dict[str, PythonHandler] = {}
        self._webhooks: dict[str, WebhookHandler] = {}
        self._executor = ToolExecutor(
            self._resolve,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            max_output_bytes=settings.max_output_bytes,
            on_error=settings.on_error,
            policy=settings.policy,
            clock=clock,
            on_call=on_call,
        )

    @property
    def enabled(self) -> bool:
        """Whether any tool can be answered at all (a gateway may skip automation otherwise)."""
        return len(self.registry) > 0 or bool(self.settings.webhooks)

    async def start(self) -> None:
        if self._threads is not None:
            raise RuntimeError("ToolAutomation already started")
        # Again: handlers may have been added through ``registry`` since construction.
        self._check_handlers()
        self._threads = HandlerThreads(self.settings.threads)
        if self.settings.webhooks:
            # total=None: the per-call timeout bounds each call, retries included.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout),
                headers={"User-Agent": "runcast"},
            )
        log.info(
            "tool automation: python tools %s, webhooks %s, policy %s",
            sorted(self.registry) or "none",
            sorted(self.settings.webhooks) or "none",
            self.settings.policy,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        # Threads of sync handlers are left to end on their own (they cannot be interrupted);
        # `runcast serve` does not wait long for them at exit.
        self._threads = None
        self._python.clear()
        self._webhooks.clear()
        if session is not None:
            await session.close()

    async def __aenter__(self) -> ToolAutomation:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_handlers(self) -> None:
        both = sorted(set(self.registry) & (set(self.settings.webhooks) - {FALLBACK}))
        if both:
            raise ConfigError(f"tools with both a Python handler and a webhook: {', '.join(both)}")

    def handles(self, action: HeldAction) -> bool:
        """Whether ``run_action`` would answer this run's action (the policy check)."""
        return (
            bool(action.calls)
            and _placeable(action.call_ids)
            and self._executor.handles(action.calls)
        )

    def statistics(self) -> AutomationStatistics:
        return AutomationStatistics(
            tracked_runs=len(self._rounds),
            stuck_threads=0 if self._threads is None else self._threads.stuck,
            executor=self._executor.statistics(),
        )

    async def forget(self, run_id: str) -> None:
        """Drop the per-run state (call when the run reaches a terminal status)."""
        await self._rounds.forget(run_id)

    async def run_action(self, action: HeldAction, emit: Emit | None = None) -> ActionOutcome:
        """Answer a run's held action (its protocol's view of ``requires_action``).

        ``emit`` receives the ``runcast.tool_call.*`` and ``runcast.tool_automation.cancelled``
        events for the run's subscriber channels.
        """
        if self._threads is None:
            raise RuntimeError("ToolAutomation.run_action() before start()")
        calls = action.calls
        if not calls:
            return Skip(reason="the run has no submit_tool_outputs action")
        if not _placeable(action.call_ids):
            # As for a Responses or Chat round (``toolchain.py``): the action is the client's.
            listed = [(call.id, call.function.name) for call in calls]
            owner = {"run_id": action.run_id, "thread_id": action.thread_id}
            await publish(
                emit, events.automation_skipped(**owner, reason=UNPLACEABLE, calls=listed)
            )
            return Skip(reason=UNPLACEABLE)
        expires_at = action.expires_at
        deadline = expires_at - self.settings.expiry_margin if expires_at is not None else None
        return await self._answer(
            action.run_id,
            calls,
            action=tuple(call.id for call in calls),
            run_id=action.run_id,
            thread_id=action.thread_id,
            owner={"run_id": action.run_id, "thread_id": action.thread_id},
            deadline=deadline,
            not_after=float(expires_at) if expires_at is not None else None,
            emit=emit,
        )

    def covers(self, calls: Sequence[PendingCall]) -> bool:
        """Whether :meth:`answer_calls` would answer these calls (the policy check)."""
        return self._executor.handles(calls)

    def unhandled(self, calls: Sequence[PendingCall]) -> list[PendingCall]:
        """The calls that have no handler."""
        return [call for call in calls if self._executor.resolve(call) is None]

    async def answer_calls(
        self,
        chain: str,
        calls: Sequence[PendingCall],
        *,
        owner: Mapping[str, str],
        emit: Emit | None = None,
    ) -> ActionOutcome:
        """Answer the function calls a Responses or Chat Completions stream ended with.

        ``chain`` names the chain of streams the calls belong to (its first stream's id): its
        rounds count against ``max_rounds`` as a run's submissions do, and the same calls of
        the same stream are answered only once (a later round may repeat ids). ``owner`` names the stream in the events (``{"response_id": ...}``
        or ``{"completion_id": ...}``); handlers see its id as ``ToolCall.run_id`` (and an empty
        ``thread_id``), so a webhook's ``Idempotency-Key`` is ``<stream id>:<call id>``. There
        is no deadline: nothing upstream expires while the handlers run.
        """
        if self._threads is None:
            raise RuntimeError("ToolAutomation.answer_calls() before start()")
        stream_id = next(iter(owner.values()), chain)
        return await self._answer(
            chain,
            calls,
            action=(stream_id, *(call.id for call in calls)),
            run_id=stream_id,
            thread_id="",
            owner=owner,
            deadline=None,
            not_after=None,
            emit=emit,
        )

    async def _answer(
        self,
        key: str,
        calls: Sequence[PendingCall],
        *,
        action: tuple[str, ...],
        run_id: str,
        thread_id: str,
        owner: Mapping[str, str],
        deadline: float | None,
        not_after: float | None,
        emit: Emit | None,
    ) -> ActionOutcome:
        if not calls:
            return Skip(reason="no tool calls to answer")
        if not self._executor.handles(calls):
            missing = sorted({c.function.name for c in calls if self._executor.resolve(c) is None})
            return Skip(reason=f"no handler for {', '.join(map(repr, missing))} (policy 'all')")

        state = await self._rounds.get(key)
        if state.last_action == action:
            # The same action as the last one (a run's call ids; a stream's id and its calls'):
            # being answered now, or answered already (seen again by a recovery or a takeover).
            return Skip(reason="these tool calls were answered already or are being answered")
        done = state.rounds
        if done >= self.settings.max_rounds:
            return await self._cancel(
                key,
                owner,
                emit,
                f"tool round limit reached ({self.settings.max_rounds} submissions)",
            )

        answering = RoundState(rounds=state.rounds, last_action=action)
        if not await self._rounds.swap(key, state, answering):
            return Skip(reason="this action is already being answered")
        decided = False
        try:
            result = await self._executor.run(
                calls, run_id=run_id, thread_id=thread_id, deadline=deadline, emit=emit, owner=owner
            )
            decided = True
        finally:
            if not decided:
                # Interrupted (e.g. the relay was cancelled): the action may be tried again.
                await self._rounds.swap(
                    key, answering, RoundState(rounds=answering.rounds, last_action=None)
                )
        # handles() was checked above, so the executor answered rather than declined.
        assert result is not None
        if result.cancel_reason is not None:
            return await self._cancel(key, owner, emit, result.cancel_reason)
        await self._rounds.swap(key, answering, RoundState(rounds=done + 1, last_action=action))
        log.info("%s: answering %d tool call(s), round %d", run_id, len(result.results), done + 1)
        return Submit(
            tool_outputs=tuple(
                ToolOutput(tool_call_id=r.tool_call_id, output=r.output) for r in result.results
            ),
            results=result.results,
            round=done + 1,
            not_after=not_after,
        )

    async def _cancel(
        self, key: str, owner: Mapping[str, str], emit: Emit | None, reason: str
    ) -> Cancel:
        log.warning("%s: stopping tool automation: %s", key, reason)
        await publish(emit, events.automation_cancelled(**owner, reason=reason))
        return Cancel(reason=reason)

    def _resolve(self, name: str) -> Handler | None:
        threads = self._threads
        if threads is None:
            raise RuntimeError("ToolAutomation used before start()")
        fn = self.registry.get(name)
        if fn is not None:
            python = self._python.get(name)
            if python is None or python.fn is not fn:
                python = self._python[name] = PythonHandler(fn, threads)
            return python
        url = self.settings.webhooks.get(name) or self.settings.webhooks.get(FALLBACK)
        if url is None:
            return None
        # Keyed by URL, not by tool name: names come from the model and are unbounded.
        webhook = self._webhooks.get(url)
        if webhook is None:
            assert self._session is not None
            webhook = self._webhooks[url] = WebhookHandler(
                url,
                self._session,
                secret=self.settings.webhook_secret,
                retries=self.settings.webhook_retries,
                backoff=self.settings.webhook_backoff,
                max_output_bytes=self.settings.max_output_bytes,
            )
        return webhook
