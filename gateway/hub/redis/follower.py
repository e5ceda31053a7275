"""The follower: one task per node that reads the cluster's live channel and checks positions.

- The task subscribes the live connection if Redis was unreachable when the broker started
  (tried again with backoff, the node unready meanwhile), then reads the live channel (one ``PUBLISH`` per batch, ``wire.py``) and hands each message
  to the local channels (``local.py``), in order; a lost live connection is re-established with
  backoff (``runcast.degraded`` meanwhile, ``outage.py``).
- After the live connection comes back (redis-py resubscribes silently and what was published
  meanwhile is lost), every local channel is compared with its meta: a missing tail is read from
  the log (a lost final event), a new epoch resets the channel (its subscribers' streams end as
  lagging ones do, WebSocket 1013, and their resume gets ``runcast.history_lost`` and the
  snapshot). Every ``position_check`` seconds the same is done for the channels with a local
  subscriber, and for ``POSITION_SLICE`` of the others in rotation: a node mirrors every channel
  it ever served until its retention ends (20,000 after a few minutes of traffic), and comparing
  them all held the follower, so every live message, for 0.7 s every 10 s (20,000 channels).
  Reads go in pipelines of at most ``POSITION_SLICE`` channels.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from gateway.hub.redis.local import LocalChannels
from gateway.hub.redis.log import MAX_BACKOFF, RedisLog
from gateway.hub.redis.outage import Outage
from gateway.hub.redis.wire import parse_live
from gateway.tasks import check_cancelled

__all__ = ["POSITION_SLICE", "Follower"]

logger = logging.getLogger(__name__)

POSITION_SLICE = 1000
"""Channels without a local subscriber compared per periodic check, and the most per pipeline."""


class Follower:
    """Feeds ``local`` from the live channel of ``log`` (:meth:`run`, a task the broker owns)."""

    def __init__(
        self, local: LocalChannels, log: RedisLog, outage: Outage, *, position_check: float
    ) -> None:
        self._local = local
        self._log = log
        self._outage = outage
        self._position_check = position_check
        self.reconnects = 0
        """Times the live connection was lost and re-established."""
        self._rotation: list[str] = []
        """Channels without a local subscriber not compared yet in this round."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        pubsub, apply, outage = self._log.pubsub, self._local.apply, self._outage
        backoff = 0.1
        check_at = loop.time() + self._position_check
        while True:
            try:
                if not self._log.subscribed:
                    await self._log.open()  # Redis was unreachable when the broker started
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    if message["type"] == "message":
                        await apply(parse_live(message["data"]))
                    elif message["type"] == "subscribe":
                        # (Re)subscribed: what was published while disconnected is lost.
                        await self.check_positions(everything=True)
                if loop.time() >= check_at:
                    check_at = loop.time() + self._position_check
                    await self.check_positions()
                backoff = 0.1
                if outage.live_down:
                    outage.live_back()
                check_cancelled()  # redis-py may have spent the task's cancellation on a read
            except (RedisError, OSError) as exc:
                if not outage.live_down:
                    outage.live_lost()
                self.reconnects += 1
                self._log.errors += 1
                logger.warning("Redis live connection: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except ValueError:
                logger.exception("unreadable live message; ignored")

    async def check_positions(self, *, everything: bool = False) -> None:
        """Compare local channels with their meta (module docstring: which ones); repair what
        the live path missed."""
        local = self._local
        if everything:
            names = list(local.channels)
            self._rotation.clear()
        else:
            watched = {ch.name for ch in local.subscribed()}
            rotation = self._rotation
            if not rotation:
                rotation.extend(local.channels)
            rest = rotation[-POSITION_SLICE:]
            del rotation[-POSITION_SLICE:]
            names = [*watched, *(n for n in rest if n not in watched)]
        for first in range(0, len(names), POSITION_SLICE):
            await self._compare(names[first : first + POSITION_SLICE])

    async def _compare(self, names: list[str]) -> None:
        local, tails = self._local, self._outage.tails
        # A channel with a held tail is ahead of its log by design: the re-append settles it.
        names = [
            n
            for n in names
            if (ch := local.channels.get(n)) is not None and not ch.pending and not tails.holds(n)
        ]
        if not names:
            return
        metas = await self._log.read_metas(names)
        for name, (epoch, last, end) in zip(names, metas, strict=True):
            ch = local.channels.get(name)
            if ch is None or name in local.loading or name in local.publishing:
                continue
            if tails.holds(name):
                continue
            if epoch is None or epoch.decode() != ch.epoch:
                if not ch.ended or epoch is not None:
                    local.reset(ch)
                continue
            if int(last) > ch.last_seq:
                repaired = await local.repair(ch, int(last))
                if repaired is None:
                    continue
            if end is not None and int(end) == ch.last_seq and not ch.ended:
                local.end(ch)
