"""The gateway's HTTP layer: OpenAI-compatible proxy, run relay, subscriber streams and auth.

Modules, one job each: ``app`` (``create_app`` wiring and lifecycle), ``runner`` (serving it on a
socket), ``listener`` (the listening socket: connection cap, request-head deadline),
``bodies`` (the request-body deadline), ``logcontext`` (the ids a request puts in its log
lines), ``drain`` (graceful drain on SIGTERM), ``health`` (``/healthz``, ``/readyz``), ``state`` (typed app keys), ``proxy`` (``/v1``
passthrough), ``routes`` (which calls stream), ``creator`` (the creator's streamed response),
``relay`` (one run's pump), ``publisher`` (where a run's events go), ``registry`` (owns the
relays), ``feed`` (bounded creator buffer), ``recovery`` (upstream failures, recovering a run),
``polling`` (upstream reads that outlast an outage), ``missed`` (what a recovered run's channels
missed), ``actions`` (the tool-automation seam), ``pending`` (a held ``requires_action``, claims
on it), ``answering`` (answering it: submit, pass on, cancel), ``streams`` (subscriber endpoints),
``tokens`` (``POST /tokens``), ``auth`` (caller keys and subscribe tokens), ``reducer``
(snapshots), ``channels`` (channel names), ``connections`` (live subscribers), ``headers``,
``cors`` and ``errors``.
"""

from .actions import ActionHandler, ActionOptions
from .app import create_app

__all__ = ["ActionHandler", "ActionOptions", "create_app"]
