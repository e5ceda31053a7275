"""cancel_and_wait: stop a child task and wait for it, without swallowing the caller's own cancellation.

``task.cancel()`` then ``await task`` raises ``CancelledError`` in the caller whether the child
ended cancelled (expected) or the caller itself was cancelled meanwhile (which must propagate).
``contextlib.suppress(CancelledError)`` cannot tell the two apart; the caller's own pending
cancellation (``Task.cancelling()``) does.
"""

from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[object] | asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended; re-raise if the caller is being cancelled."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
