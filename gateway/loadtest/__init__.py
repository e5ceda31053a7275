"""``runcast loadtest``: a load generator for OpenAI-style streaming endpoints you run.

Meant for your own servers only (a runcast gateway, the simulator, or any compatible upstream):
it sends exactly the traffic it is told to, to the targets it is given. Modules, one job each:
``settings`` (:class:`LoadSettings`), ``protocols`` (one driver per wire protocol behind one
interface), ``shape`` (ramps and open-loop arrivals), ``stats`` (mergeable histograms, counters,
timeline), ``subscribers`` (SSE/WebSocket channel readers), ``driver`` (one measured run),
``probes`` (the target checked before the load: reachable, tokens or not),
``accounting`` (a run's copies matched into the stats), ``loops`` (closed or open loop, ``--compare``'s pairs), ``workers`` (``--processes``),
``progress`` (live panel or plain lines), ``report`` (JSON, table, verdict), ``plot``
(``--plot``) and ``cli`` (flags, the embedded target, the loop).
"""

from .loops import execute
from .settings import LoadSettings
from .stats import LatencyHistogram, LoadStats

__all__ = ["LatencyHistogram", "LoadSettings", "LoadStats", "execute"]
