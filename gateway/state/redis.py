"""The shared state on Redis: every :mod:`gateway.state` interface for a multi-process deployment.

One store per interface, all on one ``redis.asyncio.Redis`` client (the *state* role: requests
and short scripts only, never a blocking read, so a socket timeout is safe), keys under one
cluster namespace. Each compare-and-write is one Lua script, so two gateway processes never
interleave inside it. Keys (``<ns>`` = the namespace):

======================== ======= ==========================================================
``<ns>:fence``           string  the fencing token counter (``INCR``: tokens only grow)
``<ns>:lease:<run>``     string  ``<token>|<expires_ms>|<owner>``, ``PX`` = the lease's ttl
``<ns>:lease:<run>:last`` string the last token handed out on the run (outlives release and
                                 expiry: the fence, and who may take a lapsed lease back)
``<ns>:claim:<run>``     hash    ``id`` of the current claim, ``sup`` once superseded
``<ns>:incoming:<run>``  string  clients' submissions in flight (expires: a dead process's
                                 marks do not hold a run forever)
``<ns>:sched`` / ``:due`` hash / zset  run -> entry; run by deadline
``<ns>:sched:order``     zset    run by insertion (the bound drops the oldest first)
``<ns>:threads``         hash    run -> thread ("" = unknown), with ``:order`` by last note
``<ns>:rounds``          hash    run -> round state, with ``:order`` by last use
``<ns>:live``            zset    runs being pumped, by lease expiry (ms), with ``:runs``
                                 (hash: run -> JSON record)
``<ns>:submit:<run>``    string  runcast's submission mark of the run's action (JSON)
======================== ======= ==========================================================

Bounded maps expire as a whole ``retention`` after their last write (memory mode's count
bound holds as well). ``len()`` of a store is the count seen by this process's last call to it
(statistics only; another process may have changed it since).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway.hub import Fence

from . import SharedState
from .cancel import check_cancelled
from .claims import TAKEOVER_TIMEOUT, Claim
from .leases import Lease
from .live import LiveRun
from .marks import SubmissionMark, SubmitState
from .rounds import RoundState
from .schedule import ExpiryEntry

__all__ = [
    "STATE_NAMESPACE",
    "RedisActionClaims",
    "RedisExpirySchedule",
    "RedisLiveRuns",
    "RedisRunLeases",
    "RedisRunThreads",
    "RedisState",
    "RedisSubmissionMarks",
    "RedisToolRounds",
    "state_client",
]

log = logging.getLogger("runcast.relay")

RETENTION = 7 * 24 * 3600
"""Seconds a bounded map outlives its last write (a cluster left idle this long starts empty)."""

INCOMING_TTL = 600
"""Seconds a client's submission counts as in flight at most (far above any upstream POST)."""

CLAIM_POLL = 0.1
"""Seconds between looks at a claim while its holder waits to be superseded (only while a tool
handler runs) and while a taker waits for the claimant's release."""


STATE_NAMESPACE = "rc:state"
"""The gateway's state keys in Redis mode (the broker's channel logs use their own prefix)."""


def state_client(url: str) -> aioredis.Redis:
    """The client of the state role: short commands, 5 s socket timeout, bounded pool."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=15,
        max_connections=64,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_ACQUIRE = """
if ARGV[3] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return false end
if ARGV[4] ~= '' then
  local last = redis.call('GET', KEYS[3])
  if last and last ~= ARGV[4] then return false end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], token, 'EX', ARGV[5])
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
local value = token .. '|' .. expires .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

_RENEW = """
local value = redis.call('GET', KEYS[1])
if not value or value ~= ARGV[1] then return false end
local sep = string.find(value, '|', 1, true)
local rest = string.sub(value, string.find(value, '|', sep + 1, true) + 1)
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
value = string.sub(value, 1, sep) .. expires .. '|' .. rest
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

_RELEASE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if string.sub(value, 1, string.find(value, '|', 1, true) - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisRunLeases:
    """:class:`~gateway.state.RunLeases` on Redis; expiry is the key's own ``PX``."""

    def __init__(self, client: aioredis.Redis, *, namespace: str) -> None:
        self._client = client
        self._ns = namespace
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(
        self,
        run_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: bool = False,
        after: int | None = None,
    ) -> Lease | None:
        key = self._key(run_id)
        value = await self._acquire(
            keys=[key, f"{self._ns}:fence", f"{key}:last"],
            args=[owner, _ms(ttl), int(take_over), "" if after is None else after, RETENTION],
        )
        return None if value is None else _lease(run_id, value)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease | None:
        value = await self._renew(keys=[self._key(lease.run_id)], args=[_value(lease), _ms(ttl)])
        return None if value is None else _lease(lease.run_id, value)

    async def release(self, lease: Lease) -> bool:
        return bool(await self._release(keys=[self._key(lease.run_id)], args=[lease.token]))

    async def holder(self, run_id: str) -> Lease | None:
        value = await self._client.get(self._key(run_id))
        return None if value is None else _lease(run_id, value)

    def fence(self, lease: Lease) -> Fence:
        # The last token handed out, not the lease itself: a lease released or lapsed since
        # still fences out every older holder.
        return Fence(f"{self._key(lease.run_id)}:last", lease.token)

    def _key(self, run_id: str) -> str:
        return f"{self._ns}:lease:{run_id}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _lease(run_id: str, value: Any) -> Lease:
    token, expires_ms, owner = _text(value).split("|", 2)
    return Lease(run_id=run_id, owner=owner, token=int(token), expires_at=int(expires_ms) / 1000)


def _value(lease: Lease) -> str:
    return f"{lease.token}|{round(lease.expires_at * 1000)}|{lease.owner}"


_CLAIM = """
redis.call('HSET', KEYS[1], 'id', ARGV[1])
redis.call('HDEL', KEYS[1], 'sup')
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

_UNCLAIM = """
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""

_SUPERSEDE = """
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return false end
redis.call('HSET', KEYS[1], 'sup', '1')
return id
"""

_ARRIVED = """
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
"""


class _RedisClaim:
    __slots__ = ("_claims", "_superseded", "id", "run_id")

    def __init__(self, claims: RedisActionClaims, run_id: str) -> None:
        self._claims = claims
        self.run_id = run_id
        self.id = uuid.uuid4().hex
        self._superseded = False

    @property
    def superseded(self) -> bool:
        return self._superseded

    async def wait_superseded(self) -> None:
        while not self._superseded:
            self._superseded = await self._claims.is_superseded(self)
            check_cancelled()
            if not self._superseded:
                await asyncio.sleep(self._claims.poll)


class RedisActionClaims:
    """:class:`~gateway.state.ActionClaims` on Redis: a claim is an id in the run's claim hash.

    Superseding marks the hash; the claimant sees it by polling while it waits (only while a tool
    handler runs), and the taker polls for the release. A claim outlives a dead process by at most
    ``retention``; a taker facing such a claim waits ``takeover_timeout`` and goes on.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        takeover_timeout: float = TAKEOVER_TIMEOUT,
        poll: float = CLAIM_POLL,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._ns = namespace
        self._takeover_timeout = takeover_timeout
        self.poll = poll
        self._retention = retention
        self._claim = client.register_script(_CLAIM)
        self._unclaim = client.register_script(_UNCLAIM)
        self._supersede = client.register_script(_SUPERSEDE)
        self._arrived = client.register_script(_ARRIVED)

    async def claim(self, run_id: str) -> Claim:
        claim = _RedisClaim(self, run_id)
        await self._claim(keys=[self._key(run_id)], args=[claim.id, self._retention])
        return claim

    async def release(self, claim: Claim) -> None:
        if isinstance(claim, _RedisClaim):
            await self._unclaim(keys=[self._key(claim.run_id)], args=[claim.id])

    async def is_superseded(self, claim: _RedisClaim) -> bool:
        claim_id, superseded = await self._client.hmget(self._key(claim.run_id), ["id", "sup"])
        # A newer claim on the run, or none at all, leaves this one as it was.
        return claim_id is not None and _text(claim_id) == claim.id and superseded is not None

    async def take_over(self, run_id: str) -> bool:
        key = self._key(run_id)
        claim_id = await self._supersede(keys=[key])
        if claim_id is None:
            return False
        try:
            async with asyncio.timeout(self._takeover_timeout):
                # Polled, not awaited on a blocking read: the claimant may be on another node.
                while True:
                    if await self._client.hget(key, "id") != claim_id:
                        break
                    check_cancelled()  # the timeout's own cancellation included
                    await asyncio.sleep(self.poll)
        except TimeoutError:
            log.warning(
                "run %s: the previous relay did not yield within %gs",
                run_id,
                self._takeover_timeout,
            )
        return True

    async def arriving(self, run_id: str) -> None:
        key = f"{self._ns}:incoming:{run_id}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, INCOMING_TTL)
            await pipe.execute()

    async def arrived(self, run_id: str) -> None:
        await self._arrived(keys=[f"{self._ns}:incoming:{run_id}"])

    async def incoming(self, run_id: str) -> bool:
        return bool(await self._client.exists(f"{self._ns}:incoming:{run_id}"))

    def _key(self, run_id: str) -> str:
        return f"{self._ns}:claim:{run_id}"


# Schedule: KEYS = entries hash, due zset, order zset; every script returns the entry count.
_SCHED_PUT = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
while redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) do
  local oldest = redis.call('ZPOPMIN', KEYS[3])[1]
  redis.call('HDEL', KEYS[1], oldest)
  redis.call('ZREM', KEYS[2], oldest)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local order = top[2] and tonumber(top[2]) + 1 or 0
redis.call('ZADD', KEYS[3], order, ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return redis.call('HLEN', KEYS[1])
"""

_SCHED_REMOVE = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.call('HLEN', KEYS[1])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HLEN', KEYS[1])
"""

_SCHED_EARLIEST = """
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not first then return false end
return redis.call('HGET', KEYS[1], first)
"""

_ENTRY = msgspec.json.Decoder(ExpiryEntry)


class RedisExpirySchedule:
    """:class:`~gateway.state.ExpirySchedule` on Redis: entries in a hash, a zset by deadline."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_entries: int = 100_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:sched", f"{namespace}:sched:due", f"{namespace}:sched:order"]
        self._max_entries = max_entries
        self._retention = retention
        self._count = 0
        self._put = client.register_script(_SCHED_PUT)
        self._remove = client.register_script(_SCHED_REMOVE)
        self._earliest = client.register_script(_SCHED_EARLIEST)

    def __len__(self) -> int:
        return self._count

    async def put(self, entry: ExpiryEntry) -> None:
        self._count = await self._put(
            keys=self._keys,
            args=[
                entry.run_id,
                msgspec.json.encode(entry),
                repr(entry.deadline),
                self._max_entries,
                self._retention,
            ],
        )

    async def get(self, run_id: str) -> ExpiryEntry | None:
        raw = await self._client.hget(self._keys[0], run_id)
        return None if raw is None else _ENTRY.decode(raw)

    async def earliest(self) -> ExpiryEntry | None:
        raw = await self._earliest(keys=self._keys)
        return None if raw is None else _ENTRY.decode(raw)

    async def remove(self, run_id: str) -> None:
        self._count = await self._remove(keys=self._keys, args=[run_id, ""])

    async def discard(self, entry: ExpiryEntry) -> None:
        self._count = await self._remove(
            keys=self._keys, args=[entry.run_id, msgspec.json.encode(entry)]
        )

    async def clear(self) -> None:
        await self._client.delete(*self._keys)
        self._count = 0


# LRU maps: KEYS = values hash, order zset (score = a per-map counter kept as the top score).
_LRU_TOUCH = """
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local order = top[2] and tonumber(top[2]) + 1 or 0
redis.call('ZADD', KEYS[2], order, ARGV[1])
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[2]) do
  redis.call('HDEL', KEYS[1], redis.call('ZPOPMIN', KEYS[2])[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
"""

_THREAD_NOTE = (
    """
local known = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == '' and known and known ~= '' then return redis.call('HLEN', KEYS[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
"""
    + _LRU_TOUCH
    + "return redis.call('HLEN', KEYS[1])"
)


class RedisRunThreads:
    """:class:`~gateway.state.RunThreads` on Redis, bounded to ``max_runs`` noted last."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_runs: int = 100_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:threads", f"{namespace}:threads:order"]
        self._max_runs = max_runs
        self._retention = retention
        self._count = 0
        self._note = client.register_script(_THREAD_NOTE)

    def __len__(self) -> int:
        return self._count

    async def note(self, run_id: str, thread_id: str | None) -> None:
        self._count = await self._note(
            keys=self._keys, args=[run_id, self._max_runs, self._retention, thread_id or ""]
        )

    async def thread_of(self, run_id: str) -> str | None:
        return _thread(await self._client.hget(self._keys[0], run_id))

    async def recent(self, limit: int) -> list[tuple[str, str | None]]:
        if limit <= 0:
            return []
        runs = [_text(run) for run in await self._client.zrevrange(self._keys[1], 0, limit - 1)]
        if not runs:
            return []
        threads = await self._client.hmget(self._keys[0], runs)
        return [(run, _thread(thread)) for run, thread in zip(runs, threads, strict=True)]


def _thread(value: Any) -> str | None:
    return _text(value) or None if value is not None else None


_ROUNDS_GET = (
    """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return {false, redis.call('HLEN', KEYS[1])} end
"""
    + _LRU_TOUCH
    + "return {state, redis.call('HLEN', KEYS[1])}"
)

_ROUNDS_SWAP = (
    """
local state = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[6]
if state ~= ARGV[4] then return {0, redis.call('HLEN', KEYS[1])} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
"""
    + _LRU_TOUCH
    + "return {1, redis.call('HLEN', KEYS[1])}"
)

_ROUNDS_FORGET = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HLEN', KEYS[1])
"""

_ROUND = msgspec.json.Decoder(RoundState)
_INITIAL_ROUND = msgspec.json.encode(RoundState())


class RedisToolRounds:
    """:class:`~gateway.state.ToolRounds` on Redis, bounded to ``max_runs`` used last.

    A swap compares the stored encoding with ``expected``'s: msgspec encodes equal states alike.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        max_runs: int = 10_000,
        retention: int = RETENTION,
    ) -> None:
        self._client = client
        self._keys = [f"{namespace}:rounds", f"{namespace}:rounds:order"]
        self._max_runs = max_runs
        self._retention = retention
        self._count = 0
        self._get = client.register_script(_ROUNDS_GET)
        self._swap = client.register_script(_ROUNDS_SWAP)
        self._forget = client.register_script(_ROUNDS_FORGET)

    def __len__(self) -> int:
        return self._count

    async def get(self, run_id: str) -> RoundState:
        raw, self._count = await self._get(
            keys=self._keys, args=[run_id, self._max_runs, self._retention]
        )
        return RoundState() if raw is None else _ROUND.decode(raw)

    async def swap(self, run_id: str, expected: RoundState, new: RoundState) -> bool:
        swapped, self._count = await self._swap(
            keys=self._keys,
            args=[
                run_id,
                self._max_runs,
                self._retention,
                msgspec.json.encode(expected),
                msgspec.json.encode(new),
                _INITIAL_ROUND,
            ],
        )
        return bool(swapped)

    async def forget(self, run_id: str) -> None:
        self._count = await self._forget(keys=self._keys, args=[run_id])


_LIVE = msgspec.json.Decoder(LiveRun)


class RedisLiveRuns:
    """:class:`~gateway.state.LiveRuns` on Redis: a zset by lease expiry (ms), records in a hash."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str, retention: int = RETENTION
    ) -> None:
        self._client = client
        self._due = f"{namespace}:live"
        self._runs = f"{namespace}:live:runs"
        self._retention = retention

    async def put(self, run: LiveRun) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._runs, run.run_id, msgspec.json.encode(run))
            pipe.zadd(self._due, {run.run_id: round(run.expires_at * 1000)})
            pipe.expire(self._runs, self._retention)
            pipe.expire(self._due, self._retention)
            await pipe.execute()

    async def touch(self, run_id: str, expires_at: float) -> None:
        await self._client.zadd(self._due, {run_id: round(expires_at * 1000)}, xx=True)

    async def remove(self, run_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._due, run_id)
            pipe.hdel(self._runs, run_id)
            await pipe.execute()

    async def expired(self, now: float, *, limit: int) -> list[LiveRun]:
        due: list[Any] = await self._client.zrangebyscore(
            self._due, "-inf", round(now * 1000), start=0, num=limit
        )
        if not due:
            return []
        records = await self._client.hmget(self._runs, due)
        runs: list[LiveRun] = []
        for run_id, raw in zip(due, records, strict=True):
            if raw is None:
                await self._client.zrem(self._due, run_id)  # a record that expired alone
                continue
            runs.append(_LIVE.decode(raw))
        return runs


_MARK = msgspec.json.Decoder(SubmissionMark)


class RedisSubmissionMarks:
    """:class:`~gateway.state.SubmissionMarks` on Redis: one key per run, expiring."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str, retention: int = RETENTION
    ) -> None:
        self._client = client
        self._ns = namespace
        self._retention = retention

    async def mark(self, run_id: str, call_ids: tuple[str, ...], state: SubmitState) -> None:
        mark = SubmissionMark(call_ids=call_ids, state=state)
        await self._client.set(self._key(run_id), msgspec.json.encode(mark), ex=self._retention)

    async def get(self, run_id: str) -> SubmissionMark | None:
        raw = await self._client.get(self._key(run_id))
        return None if raw is None else _MARK.decode(raw)

    async def forget(self, run_id: str) -> None:
        await self._client.delete(self._key(run_id))

    def _key(self, run_id: str) -> str:
        return f"{self._ns}:submit:{run_id}"


class RedisState:
    """Every state store of one gateway process on one client of ``url``; :meth:`aclose` it.

    The expiry schedule is this node's own (under ``<namespace>:node:<node_id>``): the expiry
    watcher judges an entry by its local channel and clears the schedule when it stops, so a
    shared one would let one node drop, or a stopping node wipe, the others' entries. Runs a dead
    node left waiting at an action are therefore not expired by the others (as in memory mode).
    """

    def __init__(self, url: str, *, namespace: str, node_id: str, max_runs: int = 100_000) -> None:
        self._client = state_client(url)
        node = f"{namespace}:node:{node_id}"
        self.state = SharedState(
            leases=RedisRunLeases(self._client, namespace=namespace),
            claims=RedisActionClaims(self._client, namespace=namespace),
            schedule=RedisExpirySchedule(self._client, namespace=node, max_entries=max_runs),
            threads=RedisRunThreads(self._client, namespace=namespace, max_runs=max_runs),
            conversations=RedisRunThreads(
                self._client, namespace=f"{namespace}:responses", max_runs=max_runs
            ),
            live=RedisLiveRuns(self._client, namespace=namespace),
            marks=RedisSubmissionMarks(self._client, namespace=namespace),
            shared=True,
        )
        self.rounds = RedisToolRounds(self._client, namespace=namespace)

    async def aclose(self) -> None:
        await self._client.aclose()
