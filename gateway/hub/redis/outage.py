"""Redis unreachable: what this node holds meanwhile, what its subscribers are told, the re-append.

Redis unreachable (refused, reset, or no reply within ``READ_TIMEOUT``), or refusing writes for
now (:func:`unreachable`: out of memory under ``noeviction``, a replica's ``READONLY``,
``MASTERDOWN``, ``LOADING``, a script holding it ``BUSY``): a publish to channels
this node holds is numbered here, delivered to the local subscribers at once and held in a
bounded tail per channel (``tail.py``; past the bound the publish waits); a task re-appends it in
order at those seqs once Redis answers (a retry whose first attempt landed is skipped by its
token), so the other nodes' followers find it in the log; a channel's close is held after its
last batch. A publish to a channel this node cannot number (it holds no mirror of it) is tried
again with backoff for up to ``READ_TIMEOUT`` seconds, then fails; so does a first subscriber's
mirror read (503 ``broker_unavailable``, ``local.py``). Every local subscriber gets one
``runcast.degraded`` when the outage begins (the publisher or the live connection lost Redis; one
attaching during it too) and ``runcast.restored`` when it is over; ``unavailable()`` is this
node's readiness check meanwhile. Reconnects and re-appends back off up to ``MAX_BACKOFF``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.hub.broker import DEGRADED_EVENT, RESTORED_EVENT, Fence, HubEvent, Position, Sink
from gateway.hub.channel import stored_events
from gateway.hub.redis.local import LocalChannels
from gateway.hub.redis.log import MAX_BACKOFF, RedisLog, ScriptCall
from gateway.hub.redis.tail import Held, TailLimits, Tails
from gateway.hub.redis.wire import encode_batch
from gateway.tasks import check_cancelled

__all__ = ["REAPPEND_BATCHES", "REFUSING", "UNREACHABLE", "Outage", "unreachable"]

logger = logging.getLogger(__name__)

REAPPEND_BATCHES = 64
"""Held batches re-appended per round trip (one pipeline)."""
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures after which an append may be held and tried again (Redis down, or too slow)."""
REFUSING = (OutOfMemoryError, ReadOnlyError, MasterDownError)
"""Redis answers but refuses writes for now: ``OOM`` (``maxmemory`` reached under
``noeviction``), ``READONLY`` (the address now leads to a replica: a failover demoted it),
``MASTERDOWN`` (a replica cut off from its master). ``LOADING`` is redis-py's
``BusyLoadingError``, a connection error already; ``BUSY`` has no class of its own."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage (the append is held and tried again, ``/readyz`` says
    ``broker`` meanwhile) rather than a fault of the call itself: Redis down or too slow
    (:data:`UNREACHABLE`), or refusing writes until an operator or a failover mends it
    (:data:`REFUSING`, and ``BUSY``: a script running past ``busy-reply-threshold``)."""
    if isinstance(exc, UNREACHABLE + REFUSING):
        return True
    return isinstance(exc, ResponseError) and exc.status_code == "BUSY"


class Outage:
    """Whether this node can use Redis, the tails it holds while it cannot, and their re-append
    (:meth:`reappend`, a task the broker owns)."""

    def __init__(
        self, local: LocalChannels, log: RedisLog, limits: TailLimits | None = None
    ) -> None:
        self._local = local
        self._log = log
        self.tails = Tails(limits)
        self.live_down = False
        """The follower lost the live connection and is re-establishing it."""
        self.append_down = False
        """A publish could not append and is trying again (or gave up); cleared by the next, or
        once Redis answers again with nothing held."""
        self.publisher_down = False
        """An append or close failed for want of Redis; cleared by the re-append task."""
        self._degraded_since: float | None = None
        """Unix time the current outage began (notices were sent), None while connected."""
        self.reappended = 0
        """Held events re-appended to the log once Redis was back."""
        self.retries_landed = 0
        """Appends found already in the log (a retry whose first attempt landed): skipped."""
        self.fenced_out = 0
        """Held events refused at re-append: their run had been taken over meanwhile."""

    def unavailable(self) -> str | None:
        """Why this node cannot use Redis right now (a readiness check), or None: the live
        connection is being re-established, or appends failed (and events are held)."""
        why: list[str] = []
        if self.live_down:
            why.append("live connection lost, reconnecting")
        if self.append_down or self.publisher_down or len(self.tails):
            why.append(f"append failed, {self.tails.events} events held for re-append")
        return "broker: Redis " + "; ".join(why) if why else None

    # -- the held tail --------------------------------------------------------------------------

    def holdable(self, channels: Sequence[str]) -> bool:
        """Whether this node can number a batch for every one of ``channels`` itself: it holds
        them with a known epoch (it has published to them or mirrors them), none still loading."""
        local = self._local
        for name in channels:
            ch = local.channels.get(name)
            if ch is None or ch.pending or not ch.epoch or name in local.loading:
                return False
        return True

    def hold(
        self,
        channels: Sequence[str],
        events: Sequence[HubEvent],
        token: str,
        fence: Fence | None = None,
    ) -> dict[str, Position]:
        """Number the batch here, deliver it to this node's subscribers and hold it (with the
        publisher's ``fence``, checked when it is re-appended)."""
        local = self._local
        stored = stored_events(events)
        out: dict[str, Position] = {}
        for name in channels:
            ch = local.channels[name]
            at = Position(ch.epoch, ch.last_seq + 1)
            local.feed(ch, events)
            out[name] = at
            self.tails.add(Held(name, at.epoch, at.seq, stored, token, fence))
        self.update_degraded()
        return out

    def hold_close(self, channel: str) -> None:
        """Hold the close after the channel's last batch; its subscribers here are told at once."""
        ch = self._local.channels[channel]
        fence = self.tails.last_fence(channel)
        self.tails.add(Held(channel, ch.epoch, ch.last_seq + 1, (), "", fence))
        self._local.end(ch)

    async def append_retrying(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """:meth:`RedisLog.evalsha`, tried again with backoff for up to ``READ_TIMEOUT`` seconds
        while Redis refuses connections (a restart) or writes (:data:`REFUSING`), so a running
        run rides it out. A timeout is not tried again: it took ``READ_TIMEOUT`` already."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._log.read_timeout
        delay = 0.05
        while True:
            try:
                return await self._log.evalsha(calls)
            except RedisError as exc:
                if isinstance(exc, RedisTimeoutError) or not unreachable(exc):
                    raise
                if loop.time() + delay > deadline:
                    raise
            self.append_down = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    # -- the notices ----------------------------------------------------------------------------

    def lost_publisher(self, exc: BaseException) -> None:
        if not self.publisher_down:
            logger.warning("Redis append failed (%s); holding what is published here", exc)
            self.publisher_down = True
            self.tails.work.set()
            self.update_degraded()

    def live_lost(self) -> None:
        self.live_down = True
        self.update_degraded()

    def live_back(self) -> None:
        self.live_down = False
        if not len(self.tails):
            # Redis answers again and nothing is held: a publish that gave up meanwhile is no
            # reason to stay unready until the next one succeeds.
            self.append_down = False
        self.update_degraded()

    def update_degraded(self) -> None:
        """Tell every local subscriber once when an outage begins and when it is over."""
        down = self.live_down or self.publisher_down or len(self.tails) > 0
        since = self._degraded_since
        if down == (since is not None):
            return
        now = self._local.now()
        if down:
            since = self._degraded_since = time.time()
            notice = (DEGRADED_EVENT, _degraded(since))
        else:
            assert since is not None
            self._degraded_since = None
            notice = (RESTORED_EVENT, b'{"since":%.3f}' % since)
        for ch in list(self._local.channels.values()):
            ch.notify(*notice, now)

    def attached(self, channel: str, sink: Sink) -> None:
        """``sink`` was attached to ``channel``: during an outage, it is told too."""
        since = self._degraded_since
        ch = self._local.channels.get(channel)
        if since is not None and ch is not None:
            ch.notify(DEGRADED_EVENT, _degraded(since), self._local.now(), only=sink)

    # -- the re-append --------------------------------------------------------------------------

    async def reappend(self) -> None:
        """Re-append what is held, in order, once Redis answers again (the task of ``tail.py``)."""
        tails = self.tails
        backoff = 0.05
        while True:
            await tails.work.wait()
            try:
                if len(tails):
                    await self._reappend_some(tails.heads(REAPPEND_BATCHES))
                else:
                    await self._log.ping()
                if not len(tails):
                    # Redis answered and nothing is held: appends go to Redis again (a publish
                    # that gave up meanwhile held nothing either).
                    self.publisher_down = self.append_down = False
                    tails.work.clear()
                    self.update_degraded()
                backoff = 0.05
                check_cancelled()  # redis-py may have spent the task's cancellation on a reply
            except (RedisError, OSError) as exc:
                logger.warning(
                    "Redis re-append of %d held events: %s; retrying in %.1f s",
                    tails.events,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def last_reappend(self) -> None:
        """The broker closes with something held: one bounded try, then it is lost (logged)."""
        try:
            async with asyncio.timeout(self._log.read_timeout):
                while len(self.tails):
                    await self._reappend_some(self.tails.heads(REAPPEND_BATCHES))
        except (RedisError, OSError, TimeoutError) as exc:
            lost = self.tails.clear()
            logger.error("closing with Redis unreachable (%s): %d held events lost", exc, lost)

    def _fenced_out(self, held: Held) -> None:
        """Another node took the run over while this one held ``held``: the log is the new
        owner's, and what this node's subscribers got of it beyond the log is not (the refusal
        renamed the log's epoch: ``wire.APPEND``); they resume from the log's last position."""
        self.fenced_out += len(held.events)
        ch = self._local.channels.get(held.channel)
        if ch is not None and ch.epoch == held.epoch:  # once per channel: reset drops it
            logger.warning(
                "channel %s: its run was taken over while Redis was away; what this node held "
                "of it is not re-appended",
                held.channel,
            )
            self._local.reset(ch, log_holds=held.first - 1)

    async def _reappend_some(self, batch: Sequence[Held]) -> None:
        log = self._log
        calls: list[ScriptCall] = []
        for held in batch:
            if held.is_close:
                calls.append(log.close_call(held.channel, held.fence))
            else:
                at = Position(held.epoch, held.first)
                body = encode_batch(held.events)  # again: holding it would double the memory
                calls.append(
                    log.append_call(held.channel, held.events, body, held.token, at, held.fence)
                )
        results = await log.evalsha(calls)
        for held, result in zip(batch, results, strict=True):
            self.tails.done(held)
            if result is None and held.fence is not None:
                self._fenced_out(held)
                continue
            if held.is_close:
                continue
            if int(result[2]) == 1:
                self.retries_landed += 1
                continue
            self.reappended += len(held.events)
            if int(result[2]) == 2:
                # The log moved on (Redis lost it, or others appended there): what this node
                # numbered is not the log's numbering; its subscribers resume from the log.
                ch = self._local.channels.get(held.channel)
                if ch is not None and ch.epoch == held.epoch:
                    self._local.reset(ch, log_holds=held.first - 1)


def _degraded(since: float) -> bytes:
    return b'{"reason":"redis_unreachable","since":%.3f}' % since
