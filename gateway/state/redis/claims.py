"""The claim on an action and clients' submissions in flight, on Redis: :class:`RedisActionClaims`.

Keys (``<ns>`` = the namespace):

======================== ====== ==========================================================
``<ns>:claim:<run>``     hash   ``id`` of the current claim, ``sup`` once superseded
``<ns>:incoming:<run>``  string clients' submissions in flight (expires: a dead process's
                                marks do not hold a run forever)
======================== ====== ==========================================================
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import redis.asyncio as aioredis

from gateway.state.claims import TAKEOVER_TIMEOUT, Claim
from gateway.state.redis.client import RETENTION, as_text
from gateway.tasks import check_cancelled

__all__ = ["RedisActionClaims"]

log = logging.getLogger("runcast.relay")

INCOMING_TTL = 600
"""Seconds a client's submission counts as in flight at most (far above any upstream POST)."""

CLAIM_POLL = 0.1
"""Seconds between looks at a claim while its holder waits to be superseded (only while a tool
handler runs) and while a taker waits for the claimant's release."""


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
        return claim_id is not None and as_text(claim_id) == claim.id and superseded is not None

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
