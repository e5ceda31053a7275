"""The gateway's HTTP layer: OpenAI-compatible proxy, creator responses, subscriber streams and auth.

The run lifecycle these endpoints start and read (relay, registry, recovery, held actions) lives
in :mod:`gateway.runs`. Modules, one job each: ``app`` (``create_app`` wiring and lifecycle),
``runner`` (serving it on a socket), ``listener`` (the listening socket: connection cap,
request-head deadline, backlog), ``bodies`` (the request-body deadline), ``logcontext`` (the ids a
request puts in its log lines), ``drain`` (graceful drain on SIGTERM), ``health`` (``/healthz``,
``/readyz``), ``exposition`` (``/metrics``), ``state`` (typed app keys), ``proxy`` (``/v1``
passthrough), ``routes`` (which calls stream), ``creator`` (the creator's streamed response),
``protocol_creator`` (the same for Responses and Chat Completions streams), ``retrieve`` (retrieve
streams answered from runcast's log), ``streams`` and ``protocol_streams`` (subscriber endpoints),
``tokens`` (``POST /tokens``), ``auth`` (caller keys and subscribe tokens), ``connections`` (live
subscribers), ``headers``, ``cors`` and ``errors``.
"""

from gateway.runs.actions import ActionHandler, ActionOptions

from .app import create_app

__all__ = ["ActionHandler", "ActionOptions", "create_app"]
