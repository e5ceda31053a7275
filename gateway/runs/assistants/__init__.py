"""The Assistants API as a run protocol: ``protocol`` (:data:`~.protocol.ASSISTANTS`, the
:class:`~gateway.runs.protocol.RunProtocol` implementation), ``runs`` (reading a run, the
events runcast writes in its name) and ``reducer`` (run and thread snapshots).

Nothing outside this package (and ``parsers.assistants``) names an Assistants event type.
"""
