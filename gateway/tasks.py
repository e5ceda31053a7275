"""Cancellation that is never swallowed: :func:`cancel_and_wait` and :func:`check_cancelled`.

``task.cancel()`` then ``await task`` raises ``CancelledError`` in the caller whether the child
ended cancelled (expected) or the caller itself was cancelled meanwhile (which must propagate).
``contextlib.suppress(CancelledError)`` cannot tell the two apart; the caller's own pending
cancellation (``Task.cancelling()``) does.

redis-py finishes reading a command's reply when its task is cancelled meanwhile (to keep the
connection in step) and returns the reply instead of raising, so the task's one cancellation is
spent there. A loop that polls a store calls :func:`check_cancelled` before it goes round again,
or a cancelled task (a stopped relay, an expired ``asyncio.timeout``, a closing broker) never
stops.
"""

from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait", "check_cancelled"]


async def cancel_and_wait(task: asyncio.Task[object] | asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended; re-raise if the caller is being cancelled."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


def check_cancelled() -> None:
    """Raise ``CancelledError`` if the current task has been cancelled (and not uncancelled)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
