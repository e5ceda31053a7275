"""The shared state on Redis: every :mod:`gateway.state` interface for a multi-process deployment.

One store per interface, all on one ``redis.asyncio.Redis`` client of the state role, keys under
one cluster namespace. Each compare-and-write is one Lua script, so two gateway processes never
interleave inside it. Each store's module lists its keys.

Bounded maps expire as a whole ``retention`` after their last write (memory mode's count
bound holds as well). ``len()`` of a store is the count seen by this process's last call to it
(statistics only; another process may have changed it since).

- ``client``: the state role's client (:func:`state_client`), the namespace, the retention and
  the LRU script the bounded maps share.
- ``leases``: :class:`RedisRunLeases`, a lease per run with a fencing token.
- ``claims``: :class:`RedisActionClaims`, the claim on an action and submissions in flight.
- ``schedule``: :class:`RedisExpirySchedule`, when runs left at an action are read.
- ``threads``: :class:`RedisRunThreads`, run -> thread and response -> conversation.
- ``rounds``: :class:`RedisToolRounds`, tool rounds per run.
- ``live``: :class:`RedisLiveRuns`, runs being pumped, for failover.
- ``marks``: :class:`RedisSubmissionMarks`, runcast's submission of an action, for failover.
- ``state``: :class:`RedisState`, every store of one process on one client.
"""

from gateway.state.redis.claims import RedisActionClaims
from gateway.state.redis.client import STATE_NAMESPACE, state_client, state_namespace
from gateway.state.redis.leases import RedisRunLeases
from gateway.state.redis.live import RedisLiveRuns
from gateway.state.redis.marks import RedisSubmissionMarks
from gateway.state.redis.rounds import RedisToolRounds
from gateway.state.redis.schedule import RedisExpirySchedule
from gateway.state.redis.state import RedisState
from gateway.state.redis.threads import RedisRunThreads

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
    "state_namespace",
]
