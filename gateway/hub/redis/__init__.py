"""The Redis broker: channel logs in Redis shared by every gateway node, fanned out locally.

- ``wire``: key names, the Lua scripts (append + announce, close) and the live message format.
- ``broker``: :class:`RedisBroker`, the follower that feeds this node's local channels, gap
  repair from the log and the periodic position check.
- ``tail``: what a publishing node holds while Redis is unreachable, and its bound.
"""

from gateway.hub.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
