"""The Redis broker: channel logs in Redis shared by every gateway node, fanned out locally.

- ``wire``: key names, the Lua scripts (append + announce, close) and the live message format.
- ``broker``: :class:`RedisBroker`, the Broker API over the collaborators below.
- ``log``: the connections to Redis by role and every command the broker sends.
- ``local``: this node's local channels mirrored from the log: a first subscriber's read, live
  batches applied in order, gap repair, resets.
- ``follower``: the task that reads the live channel, and the periodic position check.
- ``outage``: Redis unreachable: the held tail, the degraded/restored notices, the re-append.
- ``tail``: what a publishing node holds while Redis is unreachable, and its bound.
"""

from gateway.hub.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
