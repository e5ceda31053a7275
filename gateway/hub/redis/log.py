"""This node's connections to Redis and every command the broker sends over them.

:class:`RedisLog` owns the three clients, the scripts of ``wire.py`` (loaded by the first call
that finds them missing: at the first append, and again after a restart), the calls that build their keys and arguments, the reads of the log
and of the meta, and the count of round trips and failed calls (``statistics()``, the metrics).
It decides nothing: what a failure means (a publish held, a read answered 503, a reconnect) is up
to its callers.

Connections by role (redis-py 8 defaults would cut blocking reads at 5 s and retry them): the
publisher and the reads keep a 5 s socket timeout and retry only refused or reset connections;
the live subscriber has no socket timeout and a health check.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from gateway.hub.broker import Fence, HubEvent, HubSettings, Position
from gateway.hub.redis.wire import APPEND, CLOSE, Keys
from gateway.redis_pools import pooled_client

__all__ = ["HEALTH_CHECK", "MAX_BACKOFF", "RedisLog", "ScriptCall"]

T = TypeVar("T")

HEALTH_CHECK = 15.0
"""PING period of the idle live connection, so a dead one is noticed (redis-py health check)."""
MAX_BACKOFF = 1.0
"""Longest wait between reconnect (or re-append) attempts: one attempt a second per node costs
Redis nothing, and the end of an outage is noticed within a second."""

ScriptCall = tuple[str, list[str], list[Any]]
"""One ``EVALSHA``: the script's sha, its keys and its arguments."""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class RedisLog:
    """The publisher, read and live connections to Redis ``url``, keys under ``keys``.

    ``read_timeout`` is the socket timeout of the publisher and the reads (the broker's
    ``READ_TIMEOUT``). ``pubsub`` is the live connection's subscription, read by the follower.
    """

    def __init__(self, url: str, keys: Keys, settings: HubSettings, *, read_timeout: float) -> None:
        self.keys = keys
        self.settings = settings
        self.read_timeout = read_timeout
        # Two pools alike, so reads never wait behind appends: bounded, and calls wait for a
        # free connection (gateway.redis_pools).
        self._publisher, self._reads = (
            pooled_client(
                url,
                wait=read_timeout,
                socket_timeout=read_timeout,
                socket_connect_timeout=read_timeout,
                retry=_connection_retry(),
            )
            for _ in range(2)
        )
        self._live = aioredis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=read_timeout,
            health_check_interval=HEALTH_CHECK,
        )
        self.pubsub = self._live.pubsub()
        self._append_sha = _sha(APPEND)
        self._close_sha = _sha(CLOSE)
        self.round_trips = 0
        """Calls to Redis (a pipeline counts once), for ``statistics()`` and the metrics."""
        self.errors = 0
        """Calls to Redis that failed, and losses of the live connection."""

    async def open(self) -> None:
        """Subscribe to the live channel (errors come out of it). The scripts are not loaded
        here: the first ``EVALSHA`` that finds one missing loads it (:meth:`evalsha`)."""
        await self.pubsub.subscribe(self.keys.live)

    @property
    def subscribed(self) -> bool:
        """Whether :meth:`open` has subscribed the live connection (redis-py subscribes it
        again by itself after a reconnect)."""
        return bool(self.pubsub.subscribed)

    async def aclose(self) -> None:
        await self.pubsub.aclose()
        for client in (self._live, self._reads, self._publisher):
            await client.aclose()

    # -- the scripts ----------------------------------------------------------------------------

    def append_call(
        self,
        name: str,
        events: Sequence[HubEvent],
        body: bytes,
        token: str,
        at: Position | None = None,
        fence: Fence | None = None,
    ) -> ScriptCall:
        """One ``APPEND`` (``at``: the seq this node numbered it; ``fence``: refused if the run's
        lease has a newer holder)."""
        s = self.settings
        k = self.keys
        pairs: list[str | bytes] = []
        for e in events:
            pairs += (e.name, e.data)
        return (
            self._append_sha,
            [k.meta(name), k.log(name), *([fence.key] if fence is not None else [])],
            [
                k.live,
                secrets.token_hex(4),
                s.max_history_events,
                int(max(s.idle_ttl, s.retention)) + 1,
                name,
                len(events),
                body,
                token,
                at.epoch if at is not None else "",
                at.seq if at is not None else 0,
                *pairs,
                *([fence.token] if fence is not None else []),
            ],
        )

    def close_call(self, channel: str, fence: Fence | None = None) -> ScriptCall:
        """One ``CLOSE`` (``fence``: refused if the run's lease has a newer holder)."""
        k = self.keys
        return (
            self._close_sha,
            [k.meta(channel), k.log(channel), *([fence.key] if fence is not None else [])],
            [
                k.live,
                int(self.settings.retention) + 1,
                channel,
                *([fence.token] if fence is not None else []),
            ],
        )

    async def evalsha(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """One round trip for every call (``EVALSHA`` in ``MULTI``/``EXEC``); the scripts are
        loaded again once when Redis lost them (a restart).

        A transaction, because one publish appends a batch to several channels, each call
        checking the run's lease: Redis reads a large pipeline 16 KiB at a time and runs other
        clients' commands in between, so a lease taken back or over between two of its calls
        appended the batch to one channel and refused it on the other (a named channel then
        lacked what the response's channel held, and the node that took the run over resumed
        after the latter). In ``EXEC`` every call sees the same lease.
        """
        for attempt in (0, 1):
            async with self._publisher.pipeline(transaction=True) as pipe:
                for sha, keys, args in calls:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                self.round_trips += 1
                try:
                    return list(await self._counted(pipe.execute()))
                except NoScriptError:
                    if attempt:
                        raise
            await self._load_scripts()
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """Whether the publisher's Redis answers (raises when it does not)."""
        self.round_trips += 1
        await self._counted(self._publisher.ping())

    async def _load_scripts(self) -> None:
        for script in (APPEND, CLOSE):
            await self._publisher.script_load(script)

    # -- the reads ------------------------------------------------------------------------------

    async def read_log(self, channel: str, first: int, last: int) -> list[HubEvent]:
        """The events ``first`` to ``last`` the log still holds."""
        self.round_trips += 1
        entries: Any = await self._counted(
            self._reads.xrange(self.keys.log(channel), f"{first}-0", f"{last}-0")
        )
        return [HubEvent(f[b"e"].decode(), f[b"d"]) for _, f in entries]

    async def read_tail(self, channel: str) -> tuple[list[Any], list[HubEvent]]:
        """The meta (epoch, last seq, end) and the events of the log's tail, in one ``MULTI``."""
        k = self.keys
        async with self._reads.pipeline(transaction=True) as pipe:
            pipe.hmget(k.meta(channel), "ep", "s", "end")
            pipe.xrevrange(k.log(channel), "+", "-", count=self.settings.max_history_events)
            self.round_trips += 1
            meta, entries = await self._counted(pipe.execute())
        entries.reverse()
        return meta, [HubEvent(f[b"e"].decode(), f[b"d"]) for _, f in entries]

    async def read_meta(self, channel: str) -> list[Any]:
        """The meta of ``channel``: epoch, last seq, end (None each when it has no log)."""
        self.round_trips += 1
        meta: Any = await self._counted(
            self._reads.hmget(self.keys.meta(channel), "ep", "s", "end")
        )
        return list(meta)

    async def read_metas(self, channels: Sequence[str]) -> list[Any]:
        """:meth:`read_meta` for every one of ``channels``, in one round trip."""
        async with self._reads.pipeline(transaction=False) as pipe:
            for name in channels:
                pipe.hmget(self.keys.meta(name), "ep", "s", "end")
            self.round_trips += 1
            return list(await self._counted(pipe.execute()))

    async def _counted(self, call: Awaitable[T]) -> T:
        """Await one call to Redis, counting it in ``errors`` when it fails (not for scripts
        Redis does not hold yet: a fresh or restarted Redis, loaded on the spot)."""
        try:
            return await call
        except NoScriptError:
            raise
        except (RedisError, OSError):
            self.errors += 1
            raise


def _connection_retry() -> Retry:
    """redis-py's retry for the publisher and the reads: a refused or reset connection is tried
    again at once (a retried append that had landed is recognised by its token), a timeout is not
    (redis-py 8 would send the command ten times, ~50 s): the caller decides (a publish holds its
    batch, a read answers 503)."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.25),
        3,
        supported_errors=(RedisConnectionError,),
    )
