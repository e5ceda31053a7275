"""The run lifecycle: pumping each streamed run into the hub, holding and answering its actions.

Nothing here touches aiohttp's server side; ``gateway.http`` starts runs and reads their channels.
Modules, one job each: ``relay`` (one run's pump), ``registry`` (owns the relays, remembers each
run's thread), ``publisher`` (where a run's events go), ``channels`` (channel names), ``feed``
(bounded creator buffer), ``actions`` (the tool-automation seam), ``pending`` (a held
``requires_action``, claims on it), ``answering`` (answering it: submit, pass on, cancel),
``expiry`` (ending runs left at an unanswered action), ``recovery`` (upstream failures,
recovering a run), ``polling`` (upstream reads that outlast an outage), ``missed`` (what a
recovered run's channels missed) and ``reducer`` (snapshots).
"""
