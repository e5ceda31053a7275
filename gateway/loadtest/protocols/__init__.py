"""One driver per wire protocol behind one interface (:class:`~.base.LoadProtocol`), chosen here.

Each driver knows its protocol's request shapes (what starts a streamed call and what follows a
tool call) and reads its stream through a :class:`~.base.Tracker`: which events are text deltas,
which one ends the stream, what the outcome was, and the id naming the gateway channel to
subscribe to. The run loop in ``driver`` is the same for all of them.
"""

from .assistants import AssistantsProtocol
from .base import (
    BadAnswer,
    FatalLoadError,
    LoadProtocol,
    Poster,
    Request,
    RunStart,
    Seen,
    Tracker,
    checked_id,
    digest,
)
from .chat import ChatProtocol
from .responses import ResponsesProtocol

__all__ = [
    "PROTOCOLS",
    "AssistantsProtocol",
    "BadAnswer",
    "ChatProtocol",
    "FatalLoadError",
    "LoadProtocol",
    "Poster",
    "Request",
    "ResponsesProtocol",
    "RunStart",
    "Seen",
    "Tracker",
    "checked_id",
    "digest",
]

PROTOCOLS: dict[str, type[LoadProtocol]] = {
    "assistants": AssistantsProtocol,
    "responses": ResponsesProtocol,
    "chat": ChatProtocol,
}
