"""What the channels missed of an Assistants run whose stream broke off: :func:`missed`.

Once a recovered run has settled, :func:`missed` lists the run's steps
(``GET /threads/{thread_id}/runs/{run_id}/steps``) and messages (``GET
/threads/{thread_id}/messages?run_id=``), page after page in creation order (spec §1.2), and turns
every final one not noted yet (:class:`~gateway.runs.missed.FinalIds`) into the event that would
have carried it: ``thread.message.completed`` / ``.incomplete``, ``thread.run.step.completed`` /
``.failed`` / ``.cancelled`` / ``.expired``, with the object's bytes exactly as the upstream
returned them. A full final object replaces what deltas had accumulated (``parsers.accumulate``),
so a message cut mid-delta ends whole.

Only objects whose ``run_id`` and ``thread_id`` are the run's are taken (a server that ignores
the ``run_id`` filter lists the thread's other runs' messages, and the user's).

Order: steps in creation order, each message just before the step that created it (as a live
stream has them), messages no step names last. For a run waiting at ``requires_action``, the step
waiting for the outputs is also published, as ``thread.run.step.in_progress``: it lists the whole
tool calls, which replace arguments cut mid-delta.
"""

from __future__ import annotations

import logging

import msgspec

from gateway.hub import HubEvent
from gateway.upstream.body import path_id
from parsers.assistants.signals import FINAL_MESSAGE_STATUSES, FINAL_STEP_STATUSES
from parsers.errors import DECODE_ERRORS

from ..missed import FinalIds, Missed
from ..polling import Poller

__all__ = ["missed"]

log = logging.getLogger("runcast.relay")

_PAGE_LIMIT = 100
"""The largest page the list endpoints serve (spec §1.2)."""
_MAX_PAGES = 50
"""Pages read per list: 5,000 messages or steps is far past any real run; a listing that never
ends (a broken upstream) must still end. One whose cursor does not advance ends at once."""


class _Creation(msgspec.Struct):
    message_id: str = ""


class _Details(msgspec.Struct):
    message_creation: _Creation | None = None


class _View(msgspec.Struct):
    """The fields the choice needs; the object itself is relayed as received."""

    id: str
    status: str = ""
    run_id: str | None = None
    thread_id: str | None = None
    step_details: _Details | None = None


class _Page(msgspec.Struct):
    data: list[msgspec.Raw] = []
    has_more: bool = False
    last_id: str | None = None


_page_decoder = msgspec.json.Decoder(_Page)
_view_decoder = msgspec.json.Decoder(_View)


async def _list(
    poller: Poller, path: str, query: dict[str, str], limit: int
) -> tuple[list[tuple[_View, bytes]], bool]:
    """Every object of a list endpoint in creation order; False when it could not all be read."""
    items: list[tuple[_View, bytes]] = []
    ids: set[str] = set()
    after: str | None = None
    for _ in range(_MAX_PAGES):
        page_query = {**query, "order": "asc", "limit": str(_PAGE_LIMIT)}
        if after is not None:
            page_query["after"] = after
        answer = await poller.get(path, query=page_query, limit=limit)
        if answer is None:
            return items, False
        try:
            page = _page_decoder.decode(answer[0])
        except DECODE_ERRORS as exc:
            log.warning("%s: %s is not a list: %s", poller.what, path, exc)
            return items, False
        for raw in page.data:
            try:
                view = _view_decoder.decode(raw)
            except DECODE_ERRORS:
                log.warning("%s: skipping an unreadable item of %s", poller.what, path)
                continue
            # A page repeating objects (a cursor the server does not honour) lists each once.
            if view.id not in ids:
                ids.add(view.id)
                items.append((view, bytes(raw)))
        if not page.has_more or not page.data:
            return items, True
        cursor = page.last_id or (items[-1][0].id if items else None)
        if cursor is None or cursor == after:
            # The cursor does not advance: every further page would be this one again.
            log.warning("%s: %s does not advance past %s", poller.what, path, cursor)
            return items, False
        after = cursor
    log.warning("%s: %s has more than %d pages", poller.what, path, _MAX_PAGES)
    return items, False


def _of_run(
    poller: Poller, items: list[tuple[_View, bytes]], thread_id: str, run_id: str
) -> list[tuple[_View, bytes]]:
    """The listed objects of this run of this thread: some compatible servers ignore the
    ``run_id`` filter, and any other's would be published as this run's."""
    kept = [item for item in items if (item[0].run_id, item[0].thread_id) == (run_id, thread_id)]
    if len(kept) < len(items):
        log.warning(
            "%s: skipping %d listed objects of other runs", poller.what, len(items) - len(kept)
        )
    return kept


async def missed(
    poller: Poller, thread_id: str, run_id: str, seen: FinalIds, *, limit: int, waiting: bool
) -> Missed:
    """The events that publish what ``seen`` lacks of the run (module docstring); ``waiting``:
    the run is at ``requires_action``. ``limit`` bounds each page's bytes."""
    run_path = f"/threads/{path_id(thread_id)}/runs/{path_id(run_id)}/steps"
    steps, steps_ok = await _list(poller, run_path, {}, limit)
    messages, messages_ok = await _list(
        poller, f"/threads/{path_id(thread_id)}/messages", {"run_id": run_id}, limit
    )
    steps = _of_run(poller, steps, thread_id, run_id)
    messages = _of_run(poller, messages, thread_id, run_id)
    by_id = {
        view.id: HubEvent(f"thread.message.{view.status}", data)
        for view, data in messages
        if view.status in FINAL_MESSAGE_STATUSES and view.id not in seen.messages
    }
    events: list[HubEvent] = []
    counts = [0, 0]
    for view, data in steps:
        creation = view.step_details.message_creation if view.step_details else None
        message = by_id.pop(creation.message_id, None) if creation is not None else None
        if message is not None:
            events.append(message)
            counts[0] += 1
        if view.status in FINAL_STEP_STATUSES and view.id not in seen.steps:
            events.append(HubEvent(f"thread.run.step.{view.status}", data))
            counts[1] += 1
        elif waiting and view.status == "in_progress":
            events.append(HubEvent("thread.run.step.in_progress", data))
            counts[1] += 1
    events.extend(by_id.values())
    counts[0] += len(by_id)
    return Missed(
        events=events, messages=counts[0], steps=counts[1], complete=steps_ok and messages_ok
    )
