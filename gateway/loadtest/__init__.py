"""``runcast loadtest``: a load generator for an OpenAI-compatible Assistants endpoint.

Meant for your own servers only (a runcast gateway, the simulator, or both): it sends exactly the
traffic it is told to, to the one target it is given. Modules, one job each: ``settings``
(:class:`LoadSettings`), ``stats`` (bounded latency histograms and counters), ``subscribers``
(SSE/WebSocket channel readers), ``driver`` (virtual users and the run loop), ``report`` (table
and JSON) and ``cli`` (flags, the embedded target, the event loop).
"""

from .driver import execute
from .settings import LoadSettings
from .stats import LatencyHistogram, LoadStats

__all__ = ["LatencyHistogram", "LoadSettings", "LoadStats", "execute"]
