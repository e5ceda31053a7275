"""The Assistants API as a run protocol: ``protocol`` (:data:`~.protocol.ASSISTANTS`, the
:class:`~gateway.runs.protocol.RunProtocol` implementation), ``runs`` (reading a run, the events
runcast writes in its name, :func:`~.runs.held_action` describing a run at ``requires_action``),
``recovery`` (polling a run whose stream broke off until it settles), ``missed`` (listing the
messages and steps its channels missed), ``published`` (what a run's channel holds, for a node
taking it over) and ``reducer`` (run and thread snapshots).

Nothing outside this package, ``gateway.upstream.assistants`` (the stream reader, objects and
REST operations) and the simulator (and ``parsers.assistants``) names an Assistants type.
"""
