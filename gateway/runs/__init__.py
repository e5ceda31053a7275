"""The run lifecycle: pumping each streamed run into the hub, holding and answering its actions.

Nothing here touches aiohttp's server side; ``gateway.http`` starts runs and reads their channels.
Modules, one job each: ``relay`` (one run's pump, an I/O shell, and the run's state), the
paths it hands off to as functions of that state (``holding``: the action it holds and answers;
``settling``: an upstream failure and the run's recovery; ``adoption``: a dead owner's run taken
up), ``env`` (what every relay shares), ``readiness`` (a relay's start, reported once),
``lifecycle`` (its phases and transitions as data), ``registry`` (owns the relays, remembers each run's thread), ``protocol``
(the seam: what the lifecycle asks of an upstream API), ``assistants/`` (the Assistants API
behind it, and the only modules here that name its types: ``protocol``, ``runs`` (run reads,
the events runcast writes in its name, the held action's view), ``recovery`` and ``missed``
(polling a broken run to its end, listing what its channels missed), ``published`` (what a
taker finds on a run's channel), ``reducer`` (snapshots)), ``publisher`` (where a run's events
go), ``channels`` (channel names), ``feed`` (bounded creator buffer), ``actions`` (the
tool-automation seam and :class:`~gateway.runs.actions.HeldAction`, the protocol-neutral view
of a run held at an action), ``answering`` (a held ``requires_action`` from claim to release:
submit, pass on, cancel), ``expiry`` (ending runs left at an unanswered action), ``recovery``
(the events that report an upstream failure and a recovery), ``polling`` (upstream reads that
outlast an outage) and ``missed`` (what a recovered run's channels hold and missed), ``keeper``
(a relay's lease, renewed on a timer, and the run's live record) and ``takeover`` (failover:
taking over the runs whose owner died). The generic modules never name a protocol's types; a
test (``tests/gateway/test_protocol_boundaries.py``) holds them to it.
State shared between gateway processes is in ``gateway.state``.

Tools after an owner dies mid-action (policy): the owner marks ``submitting`` (with the action's
tool call ids) before it posts the outputs and ``submitted`` once accepted. A node taking the run
over re-runs the handlers (same ``tool_call_id``, the idempotency key) and submits only when the
outputs were provably not taken: no ``submitting`` mark, or the run still at ``requires_action``
with the same tool call ids after the dead owner's lease lapsed. Otherwise (the run unreadable
until the recovery deadline, or ended ``expired``/``cancelled``/``failed``) it publishes
``runcast.tool_automation.unknown`` and follows the run without submitting. ``protocols/`` pumps the Responses API and Chat Completions streams (one pump
behind a small stream seam, one spec per protocol, their snapshot reducers).
"""
