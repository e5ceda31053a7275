"""The Assistants API over the upstream client: what is ``thread.run.*``-specific in talking to it.

``stream`` (:class:`~.stream.RunStream`: chunks -> SSE -> typed Assistants events, the
end-of-stream rules of spec §2.1/§2.4), ``objects`` (non-streamed Run, Message and RunStep JSON
-> ``parsers.assistants`` models, list pages) and ``operations`` (the typed run calls of spec
§1.2, a mixin of :class:`~gateway.upstream.UpstreamClient`). The rest of ``gateway.upstream``
is protocol-neutral; ``gateway.upstream`` re-exports ``RunStream``, ``StreamItem`` and ``Page``.
"""
