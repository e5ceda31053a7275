"""Decoding of non-streamed upstream JSON answers into the ``parsers.assistants`` models.

A Run, Message or RunStep returned as a plain JSON body is the same object a stream carries, so
it gets the same tolerance (unknown fields ignored, unknown union members kept as
``UnknownVariant``): the strict msgspec Decoder first, and on a schema mismatch the stream
decoder's tolerant path, reached through :func:`~parsers.assistants.decode_event` under the
event name that carries that object. List answers (spec §1.2) become a :class:`Page`.
"""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar, cast

import msgspec

from parsers.assistants import Message, MessageEvent, Run, RunEvent, RunStep, RunStepEvent
from parsers.assistants import decode_event as _decode_event
from parsers.errors import DECODE_ERRORS, EventDecodeError, RemoteProtocolError

__all__ = ["Page", "decode_message_page", "decode_run", "decode_step_page"]

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A list answer: ``{"object":"list","data":[...],"first_id","last_id","has_more"}``."""

    data: list[T] = []
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
    object: str = "list"


class _RawPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[msgspec.Raw] = []
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
    object: str = "list"


class _Payload:
    """An ``EventSource`` for :func:`decode_event` made from a JSON body."""

    __slots__ = ("data_bytes", "event")

    def __init__(self, event: str, data_bytes: bytes) -> None:
        self.event = event
        self.data_bytes = data_bytes

    @property
    def data(self) -> str:
        return self.data_bytes.decode("utf-8", "replace")


class _ObjectDecoder(Generic[T]):
    __slots__ = ("_event_name", "_event_type", "_strict", "_what")

    def __init__(self, type_: type[T], event_name: str, event_type: type[Any]) -> None:
        self._strict = msgspec.json.Decoder(type_)
        self._event_name = event_name
        self._event_type = event_type
        self._what = type_.__name__

    def decode(self, data: bytes | msgspec.Raw) -> T:
        try:
            return self._strict.decode(data)
        except msgspec.ValidationError:
            pass
        except DECODE_ERRORS as exc:
            raise RemoteProtocolError(f"upstream {self._what} body is not JSON: {exc}") from exc
        try:
            event = _decode_event(_Payload(self._event_name, bytes(data)))
        except EventDecodeError as exc:
            raise RemoteProtocolError(
                f"upstream {self._what} body does not fit its schema: {exc.reason}"
            ) from exc
        if not isinstance(event, self._event_type):  # pragma: no cover - decode_event contract
            raise RemoteProtocolError(f"upstream {self._what} body did not decode")
        return cast(T, event.data)


_RUN: Final = _ObjectDecoder(Run, "thread.run.created", RunEvent)
_MESSAGE: Final = _ObjectDecoder(Message, "thread.message.created", MessageEvent)
_STEP: Final = _ObjectDecoder(RunStep, "thread.run.step.created", RunStepEvent)
_RAW_PAGE: Final = msgspec.json.Decoder(_RawPage)


def decode_run(data: bytes) -> Run:
    """A Run from a JSON body; :class:`~parsers.errors.RemoteProtocolError` when it is not one."""
    return _RUN.decode(data)


def _decode_page(data: bytes, item: _ObjectDecoder[T]) -> Page[T]:
    try:
        raw = _RAW_PAGE.decode(data)
    except DECODE_ERRORS as exc:  # ValidationError included
        raise RemoteProtocolError(f"upstream list body does not decode: {exc}") from exc
    return Page(
        data=[item.decode(entry) for entry in raw.data],
        first_id=raw.first_id,
        last_id=raw.last_id,
        has_more=raw.has_more,
        object=raw.object,
    )


def decode_message_page(data: bytes) -> Page[Message]:
    """A list of Messages (``GET /threads/{id}/messages``)."""
    return _decode_page(data, _MESSAGE)


def decode_step_page(data: bytes) -> Page[RunStep]:
    """A list of RunSteps (``GET /threads/{id}/runs/{id}/steps``)."""
    return _decode_page(data, _STEP)
