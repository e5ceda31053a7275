"""The one-submission-per-action claim: :class:`ActionClaims` and its in-memory form.

Spec §5: one POST answers an action and the upstream accepts only the first. The relay that
answers a run's ``requires_action`` itself *claims* the run from that event on; the relay of a
client's own submission through runcast, once the upstream accepted it, *takes the claim over*:
the claimant is told it was superseded, stops its handlers, closes its segment and releases the
claim, which the taker awaits (bounded) before publishing anything. A client's submission in
flight is counted (:meth:`ActionClaims.arriving` / :meth:`ActionClaims.arrived`) so that a relay
whose own submission was refused leaves the run's end to that submission's relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

__all__ = ["TAKEOVER_TIMEOUT", "ActionClaims", "Claim", "MemoryActionClaims"]

log = logging.getLogger("runcast.relay")

TAKEOVER_TIMEOUT = 10.0
"""Longest a submission's relay waits for the claimant to close its segment. Closing takes a
cancelled handler, at most one refused POST and one GET, so this is only hit by a stuck upstream."""


class Claim(Protocol):
    """One relay's hold on a run's pending action."""

    @property
    def run_id(self) -> str: ...

    @property
    def superseded(self) -> bool:
        """A client's submission was accepted: do not submit; close the segment."""
        ...

    async def wait_superseded(self) -> None:
        """Return once :attr:`superseded` is true."""
        ...


class ActionClaims(Protocol):
    """Claims on runs' pending actions, and the clients' submissions in flight through runcast."""

    async def claim(self, run_id: str) -> Claim:
        """Claim ``run_id``'s action (a previous claim on it counts as released)."""
        ...

    async def release(self, claim: Claim) -> None:
        """The claimant has closed its segment or moved on (idempotent)."""
        ...

    async def take_over(self, run_id: str) -> bool:
        """Supersede ``run_id``'s claimant and wait (bounded) until it has released its claim.

        True when there was a claimant. Called by the relay of a client's submission once the
        upstream accepted it, before it publishes anything.
        """
        ...

    async def arriving(self, run_id: str) -> None:
        """A client's submission for ``run_id`` is on its way upstream through runcast."""
        ...

    async def arrived(self, run_id: str) -> None:
        """That submission was answered (accepted or refused)."""
        ...

    async def incoming(self, run_id: str) -> bool:
        """Whether a client's submission for ``run_id`` is in flight through runcast."""
        ...


class _MemoryClaim:
    __slots__ = ("_superseded", "released", "run_id")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._superseded = asyncio.Event()
        self.released = asyncio.Event()

    @property
    def superseded(self) -> bool:
        return self._superseded.is_set()

    def supersede(self) -> None:
        self._superseded.set()

    async def wait_superseded(self) -> None:
        await self._superseded.wait()


class MemoryActionClaims:
    """:class:`ActionClaims` for one process.

    Bounded by the live relays: each releases its claim (and its in-flight mark) when its segment
    ends, at the latest when its task ends.
    """

    def __init__(self, *, takeover_timeout: float = TAKEOVER_TIMEOUT) -> None:
        self._claims: dict[str, _MemoryClaim] = {}
        self._incoming: dict[str, int] = {}
        self._takeover_timeout = takeover_timeout

    def __len__(self) -> int:
        return len(self._claims)

    async def claim(self, run_id: str) -> Claim:
        previous = self._claims.get(run_id)
        if previous is not None:
            previous.released.set()
        claim = self._claims[run_id] = _MemoryClaim(run_id)
        return claim

    async def release(self, claim: Claim) -> None:
        current = self._claims.get(claim.run_id)
        if current is claim:
            del self._claims[claim.run_id]
        if isinstance(claim, _MemoryClaim):
            claim.released.set()

    async def take_over(self, run_id: str) -> bool:
        claim = self._claims.get(run_id)
        if claim is None or claim.released.is_set():
            return False
        claim.supersede()
        try:
            async with asyncio.timeout(self._takeover_timeout):
                await claim.released.wait()
        except TimeoutError:
            log.warning(
                "run %s: the previous relay did not yield within %gs",
                run_id,
                self._takeover_timeout,
            )
        return True

    async def arriving(self, run_id: str) -> None:
        self._incoming[run_id] = self._incoming.get(run_id, 0) + 1

    async def arrived(self, run_id: str) -> None:
        left = self._incoming.get(run_id, 0) - 1
        if left > 0:
            self._incoming[run_id] = left
        else:
            self._incoming.pop(run_id, None)

    async def incoming(self, run_id: str) -> bool:
        return run_id in self._incoming
