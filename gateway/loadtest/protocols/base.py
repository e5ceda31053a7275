"""The seam between the run loop and a wire protocol: requests out, classified events in.

A :class:`LoadProtocol` is made once per target (``prepare`` may create what every run shares,
such as an assistant); ``begin`` makes one run's first request. Each copy of a run's stream (the
creator's and every subscriber's) is read by its own :class:`Tracker`, so both sides classify
the same bytes the same way. ``Tracker.feed`` is pure: no I/O, so drivers are tested on literal
event sequences.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, NamedTuple

__all__ = [
    "BadAnswer",
    "FatalLoadError",
    "LoadProtocol",
    "Poster",
    "Request",
    "RunStart",
    "Seen",
    "Tracker",
    "checked_id",
    "digest",
]

Poster = Callable[[str, Mapping[str, object]], Awaitable[bytes]]
"""POST a JSON body to a path under ``/v1``; the response body (raises on a non-200)."""


class FatalLoadError(Exception):
    """The target cannot take this load at all (e.g. it does not speak the protocol)."""


class BadAnswer(ValueError):
    """The target answered what the load test cannot use (an id it would put in a URL)."""


_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
"""A gateway id (README, Endpoints: 1-128 letters, digits, ``_``, ``-`` and ``.``): a channel
name allows no more."""


def checked_id(value: str, what: str) -> str:
    """``value`` if it may go into a URL path as one segment, else :class:`BadAnswer`: an id the
    target supplies must not steer the load elsewhere (``../``, ``?``, ``#``). Ids made of dots
    only are refused too: URL normalisation resolves ``.`` and ``..`` (RFC 3986 §5.2.4)."""
    if _ID.fullmatch(value) is None or not value.strip("."):
        shown = "".join(c if c.isprintable() else "?" for c in value[:80])
        raise BadAnswer(f"{what} {shown!r} is no id (1-128 of A-Z a-z 0-9 _ - .)")
    return value


class Request(NamedTuple):
    """One streamed POST: a path under ``/v1`` and its JSON body."""

    path: str
    body: Mapping[str, object]


class RunStart(NamedTuple):
    request: Request
    channel: str | None = None
    """Gateway channel path to subscribe to before the request (None: known from the stream)."""
    token_scope: Mapping[str, str] | None = None
    """Body of ``POST /tokens`` minting a subscribe token for ``channel``."""


class Seen(NamedTuple):
    upstream: bool
    """An event of the upstream's stream (runcast's own ``runcast.*`` notices are not)."""
    text: int
    """Characters of output text the event carries (0: not a text delta)."""
    end: bool
    """The event closing this stream segment (the HTTP body should end after it)."""
    calls: bool = False
    """The event turns the segment to tool calls (a chat chunk with ``tool_calls``): a gateway
    that answers them leaves the rest of that segment out of its creator's copy."""
    key: int | None = None
    """What the event is matched to the other copies by, where its bytes may differ by copy
    (None: its name and bytes). Chat chunks: what they say, never their ``usage`` (a gateway that
    answers tool calls gives its creator the rounds' sum) nor ``role`` (left out of the rounds
    after the first) nor their encoding (a chunk cut for the creator is encoded again)."""


class Tracker(ABC):
    """Reads one copy of a run's stream: outcome, failure kind, follow-up and channel id."""

    def __init__(self) -> None:
        self.status: str | None = None
        """The last run status seen (``completed``, ``failed``, ``requires_action`` ...)."""
        self.failure: str | None = None
        """Set when an event ends the run as failed (an ``error`` event, ``runcast.lagged``)."""
        self.finished = False
        """True once the run's final segment has ended on this copy."""
        self.detail: str | None = None
        """What went wrong, with ``failure`` where the stream itself was at fault."""

    @abstractmethod
    def feed(self, name: str, data: bytes) -> Seen:
        """Classify one SSE event (``name`` is the SSE event type, ``message`` when absent)."""

    def follow_up(self) -> Request | None:
        """The next streamed request of the run after a segment that asked for tool outputs."""
        return None

    @property
    def channel(self) -> str | None:
        """The gateway channel path of this run, once the stream named it."""
        return None

    def outcome(self) -> str:
        """``completed`` or the failure kind the report counts, after the last segment."""
        if self.failure is not None:
            return self.failure
        if self.status is None or not self.finished:
            return "truncated"
        return "completed" if self.status == "completed" else f"run_{self.status}"

    def _bad(self, detail: str) -> Seen:
        """The stream carried what this protocol does not allow: the run fails as ``protocol``
        there (the event ends this copy; nothing after it is read)."""
        if self.failure is None:
            self.failure, self.detail = "protocol", detail
        return Seen(True, 0, True)

    def _runcast(self, name: str) -> Seen | None:
        """runcast's own events: not upstream; two of them end a creator's response early."""
        if not name.startswith("runcast."):
            return None
        if name in ("runcast.lagged", "runcast.upstream_error"):
            self.failure = name.removeprefix("runcast.")
            return Seen(False, 0, True)
        return Seen(False, 0, False)


class LoadProtocol(ABC):
    """One wire protocol: what a run sends and how its stream is read."""

    name: ClassVar[str]
    headers: ClassVar[Mapping[str, str]] = {}
    """Headers every request of the protocol carries (as the official SDK sends them)."""
    channel_spans_run: ClassVar[bool] = True
    """Whether one channel carries every segment of a run (else only the first segment's)."""
    channel_header: ClassVar[tuple[str, str] | None] = None
    """The response header naming the run's channel id and that channel's path prefix: a
    runcast gateway answers it with ``runcast-subscribe-token`` before the first event."""

    def __init__(self, *, model: str, scenario: str) -> None:
        self.model = model
        self.scenario = scenario

    async def prepare(self, post: Poster) -> None:  # noqa: B027 - optional hook
        """Create what every run shares, once per target."""

    @abstractmethod
    async def begin(self, post: Poster) -> RunStart:
        """Whatever a run needs before its streamed request; that request."""

    @abstractmethod
    def tracker(self, start: RunStart) -> Tracker:
        """A reader for one copy of the run's stream."""

    def metadata(self) -> dict[str, str]:
        # The simulator picks its scenario from here; real upstreams store it as metadata.
        return {"mock_scenario": self.scenario}


def digest(name: str, data: bytes, seen: Seen) -> int:
    """What one copy's event is matched to the others' by: its name and bytes, or its name and
    ``Seen.key`` where its bytes may differ by copy."""
    return hash((name, data) if seen.key is None else (name, seen.key))
