"""Reconciling a Responses stream cut before its end that cannot be resumed: :class:`ResponseRecovery`.

A foreground response cannot be re-streamed (404/400, reference responses-and-chat.md §2.1) and a
background one cannot once its resume window has passed; but a *stored* response goes on to its
end upstream and can be read whole (§7.3: "if ``store:true`` poll the final object"). So, for a
creating request that did not say ``store: false``, ``GET /responses/{id}`` is polled
(:class:`~gateway.runs.polling.Poller`: retried through an outage until the recovery deadline;
a 4xx other than 408/409/425/429 ends it) every :data:`POLL_INTERVAL` until the response's
status is terminal. What the channels and the creator then get, after the last event relayed:

- ``runcast.recovered``: ``{"type": "runcast.recovered", "kind": "response", "id", "reason",
  "status", "cursor"}`` (``reason`` as in ``runcast.upstream_lost``, ``cursor`` the last
  ``sequence_number`` relayed; ``type`` lets the openai SDK type it as an unknown event);
- ``response.<status>`` (``completed``, ``failed`` or ``incomplete``): the polled Response,
  unchanged, as ``response``, with ``sequence_number`` the cursor + 1 and
  ``"runcast_reconciled": true`` (the SDK and runcast's reducers ignore unknown fields), so a
  snapshot folds the final output and the creator's stream ends as the upstream's would have;
- a ``cancelled`` response has no event of its own (the catalogue, §1.3, has none): the stream
  then ends with ``runcast.upstream_lost`` naming the status (the relay's part).

The events between the cut and the end (the missing deltas) are not synthesized: the final
Response carries all of them. A reconciled response that called functions does not continue a
tool chain: the chain ends with it (its calls are in its output for the caller to answer).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import msgspec

from gateway.hub import HubEvent
from gateway.upstream import UpstreamClient
from parsers.errors import DECODE_ERRORS, EventDecodeError
from parsers.responses import decode_event
from parsers.sse import ServerSentEvent

from ..polling import Poller
from ..recovery import RECOVERED_EVENT
from .spec import Reconciled

__all__ = ["PEEK_WITHIN", "POLL_INTERVAL", "TERMINAL_STATUSES", "ResponseRecovery", "stored"]

log = logging.getLogger("runcast.relay")

POLL_INTERVAL = 0.5
"""Seconds between two reads of a response still running (the openai SDK's ``poll()`` waits
1 s; a response is polled only after its stream broke, so the wait is kept shorter)."""

PEEK_WITHIN = 2.0
"""Seconds :meth:`ResponseRecovery.cancelled` may take: past them the stream is resumed."""

TERMINAL_STATUSES = frozenset({"completed", "failed", "incomplete", "cancelled"})
"""A Response's statuses after which it changes no more (``openapi.yaml`` ``Response.status``)."""

_EVENT_OF = {
    "completed": "response.completed",
    "failed": "response.failed",
    "incomplete": "response.incomplete",
}


class _StoreView(msgspec.Struct):
    # A view of the creating request: every other member is ignored.
    store: object = None


class _ResponseView(msgspec.Struct):
    id: str | None = None
    status: str | None = None


class _Recovered(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    kind: str
    id: str
    reason: str
    status: str
    cursor: int | None


_store_view = msgspec.json.Decoder(_StoreView)
_response_view = msgspec.json.Decoder(_ResponseView)
_encode = msgspec.json.Encoder().encode


def stored(body: bytes) -> bool:
    """Whether a creating request leaves its response stored (``store`` defaults to true)."""
    try:
        return _store_view.decode(body).store is not False
    except DECODE_ERRORS:
        return False  # the upstream refuses it anyway; nothing to poll


class ResponseRecovery:
    """The :data:`~gateway.runs.protocols.spec.Reconcile` of stored responses (module docstring)."""

    __slots__ = ("_api_key", "_interval", "_upstream", "_within")

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        within: float,
        api_key: str | None = None,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._upstream = upstream
        self._within = within
        self._api_key = api_key
        self._interval = interval

    async def __call__(
        self, response_id: str, cursor: int | None, reason: str
    ) -> Reconciled | None:
        found = await self._settled(response_id)
        if found is None:
            return None
        status, body = found
        notice = _Recovered(
            type=RECOVERED_EVENT,
            kind="response",
            id=response_id,
            reason=reason,
            status=status,
            cursor=cursor,
        )
        events = [HubEvent(RECOVERED_EVENT, _encode(notice))]
        name = _EVENT_OF.get(status)
        if name is None:
            return Reconciled(status=status, events=events, ended=False)
        seq = 0 if cursor is None else cursor + 1
        data = b'{"type":"%s","sequence_number":%d,"response":%s,"runcast_reconciled":true}' % (
            name.encode(),
            seq,
            body,
        )
        try:
            typed = decode_event(ServerSentEvent(event=name, data_bytes=data))
        except EventDecodeError as exc:
            log.warning(
                "response %s: the polled response does not fit %s: %s", response_id, name, exc
            )
            return None
        events.append(HubEvent(name, data, typed))
        return Reconciled(status=status, events=events, ended=True)

    async def cancelled(self, response_id: str) -> bool:
        """One read of the response (retried through a blip for :data:`PEEK_WITHIN` at most):
        whether it is ``cancelled``. A cut background stream is resumed otherwise; resuming a
        cancelled one only brings its events again and ends without a last word."""
        poller = Poller(
            self._upstream,
            within=PEEK_WITHIN,
            api_key=self._api_key,
            what=f"response {response_id}",
        )
        answer = await poller.get(
            f"/responses/{quote(response_id, safe='')}",
            limit=self._upstream.settings.max_response_bytes,
        )
        if answer is None:
            return False
        try:
            view = _response_view.decode(answer[0])
        except DECODE_ERRORS:
            return False
        return view.id == response_id and view.status == "cancelled"

    async def _settled(self, response_id: str) -> tuple[str, bytes] | None:
        """``(status, Response JSON)`` once the response is terminal; None when the poller gives
        up first or the answer is not that response."""
        poller = Poller(
            self._upstream,
            within=self._within,
            api_key=self._api_key,
            what=f"response {response_id}",
        )
        path = f"/responses/{quote(response_id, safe='')}"
        limit = self._upstream.settings.max_response_bytes
        while True:
            answer = await poller.get(path, limit=limit)
            if answer is None:
                return None
            body = answer[0].strip()
            try:
                view = _response_view.decode(body)
            except DECODE_ERRORS as exc:
                log.warning("response %s: the polled response is not JSON: %s", response_id, exc)
                return None
            if view.id != response_id or view.status is None:
                log.warning("response %s: the poll answered another object", response_id)
                return None
            if view.status in TERMINAL_STATUSES:
                return view.status, body
            if not await poller.sleep(self._interval):
                log.warning(
                    "response %s: still %s at the recovery deadline", response_id, view.status
                )
                return None
