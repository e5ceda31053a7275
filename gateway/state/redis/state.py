"""Every state store of one gateway process on Redis, on one client: :class:`RedisState`."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from gateway.logs import masked_url
from gateway.state import SharedState
from gateway.state.redis.claims import RedisActionClaims
from gateway.state.redis.client import state_client
from gateway.state.redis.leases import RedisRunLeases
from gateway.state.redis.live import RedisLiveRuns
from gateway.state.redis.marks import RedisSubmissionMarks
from gateway.state.redis.rounds import RedisToolRounds
from gateway.state.redis.schedule import RedisExpirySchedule
from gateway.state.redis.threads import RedisRunThreads
from gateway.state.redis.upstreams import (
    REFRESH_SECONDS,
    check_upstream,
    forget_upstream,
    upstream_identity,
)
from gateway.tasks import check_cancelled

log = logging.getLogger("runcast")

__all__ = ["RedisState"]


class RedisState:
    """Every state store of one gateway process on one client of ``url``; :meth:`aclose` it.

    The expiry schedule is this node's own (under ``<namespace>:node:<node_id>``): the expiry
    watcher judges an entry by its local channel and clears the schedule when it stops, so a
    shared one would let one node drop, or a stopping node wipe, the others' entries. Runs a dead
    node left waiting at an action are therefore not expired by the others (as in memory mode).
    """

    def __init__(self, url: str, *, namespace: str, node_id: str, max_runs: int = 100_000) -> None:
        self._client = state_client(url)
        self._namespace = namespace
        self._node_id = node_id
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

    async def keep_upstream_recorded(self, base_url: str, *, cluster: str) -> None:
        """Record this node's upstream (``upstreams.py``) now and every ``REFRESH_SECONDS``, and
        log a warning, once per node, for every other node of the namespace (``cluster``: its
        name, for the message) that recorded another; while Redis is unreachable, tried again
        every second or two. Runs until cancelled (the app owns it)."""
        mine = upstream_identity(base_url)
        warned: set[tuple[str, str]] = set()
        retry = 1.0
        while True:
            try:
                clashes = await check_upstream(
                    self._client, namespace=self._namespace, node_id=self._node_id, identity=mine
                )
            except RedisError as exc:  # unreachable: the node serves all the same
                check_cancelled()
                if retry == 1.0:
                    log.warning("upstream not compared with the other nodes' yet (Redis: %s)", exc)
                await asyncio.sleep(retry)
                retry = min(2 * retry, REFRESH_SECONDS)
                continue
            retry = 1.0
            for clash in clashes:
                if (clash.node_id, clash.identity) in warned:
                    continue
                warned.add((clash.node_id, clash.identity))
                log.warning(
                    "node %s of Redis namespace %r relays to another upstream (identity %s, "
                    "recorded %s; this node's %s is %s): the nodes of one cluster must share "
                    "--upstream, and two clusters on one Redis need their own --redis-namespace, "
                    "or they take over each other's runs",
                    clash.node_id,
                    cluster,
                    clash.identity,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clash.recorded_at)),
                    masked_url(base_url.rstrip("/")),
                    mine,
                )
            await asyncio.sleep(REFRESH_SECONDS)

    async def forget_upstream(self) -> None:
        """Remove this node's upstream record (a clean stop); Redis unreachable: left to age."""
        try:
            await forget_upstream(self._client, namespace=self._namespace, node_id=self._node_id)
        except RedisError as exc:
            log.debug("upstream record left to age (Redis: %s)", exc)

    async def aclose(self) -> None:
        await self._client.aclose()
