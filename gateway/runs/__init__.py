"""The run lifecycle: pumping each streamed run into the hub, holding and answering its actions.

Nothing here touches aiohttp's server side; ``gateway.http`` starts runs and reads their channels.
Modules, one job each: ``relay`` (one run's pump, an I/O shell), ``lifecycle`` (its phases and
transitions as data), ``registry`` (owns the relays, remembers each run's thread), ``protocol``
(the seam: what the lifecycle asks of an upstream API), ``assistants/`` (the Assistants API
behind it: signals, continuation, run reads, snapshot reducers), ``publisher`` (where a run's
events go), ``channels`` (channel names), ``feed`` (bounded creator buffer), ``actions`` (the
tool-automation seam), ``answering`` (a held ``requires_action`` from claim to release: submit,
pass on, cancel), ``expiry`` (ending runs left at an unanswered action), ``recovery`` (upstream
failures, recovering a run), ``polling`` (upstream reads that outlast an outage) and ``missed``
(what a recovered run's channels missed). State shared between gateway processes is in
``gateway.state``. ``protocols/`` pumps the Responses API and Chat Completions streams (one pump
behind a small stream seam, one spec per protocol, their snapshot reducers).
"""
