"""``redacting``: a reducer factory whose snapshots never carry one secret (the upstream key).

Each upstream event is scrubbed of the key as its bytes arrive, but a reducer joins what events
carry (a message's text from its deltas), so a key spelled across several deltas would appear
whole in the joined text. The snapshot is the one place runcast itself joins them: its bytes are
scrubbed as they are made. (A client joining the deltas it receives joins the halves itself.)
"""

from __future__ import annotations

from .broker import HubEvent, Reducer, ReducerFactory

__all__ = ["redacting"]

_MASK = b"***"


class _Redacted:
    """``inner``'s snapshots with ``secret`` masked; its state and size unchanged."""

    __slots__ = ("_inner", "_secret")

    def __init__(self, inner: Reducer, secret: bytes) -> None:
        self._inner = inner
        self._secret = secret

    def apply(self, event: HubEvent) -> None:
        self._inner.apply(event)

    def snapshot(self) -> bytes:
        data = self._inner.snapshot()
        return data.replace(self._secret, _MASK) if self._secret in data else data

    @property
    def nbytes(self) -> int:
        return int(getattr(self._inner, "nbytes", 0))


def redacting(factory: ReducerFactory, secret: str | None) -> ReducerFactory:
    """``factory``, its reducers' snapshots scrubbed of ``secret`` (unchanged when None)."""
    if not secret:
        return factory
    encoded = secret.encode()

    def redacted(channel: str) -> Reducer | None:
        reducer = factory(channel)
        return None if reducer is None else _Redacted(reducer, encoded)

    return redacted
