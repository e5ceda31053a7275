"""check_cancelled: the cancellation a network client swallowed, raised again in a polling loop.

redis-py finishes reading a command's reply when its task is cancelled meanwhile (to keep the
connection in step) and returns the reply instead of raising, so the task's one cancellation is
spent there. A loop that polls a store must look before it goes round again, or a cancelled task
(a stopped relay, an expired ``asyncio.timeout``) never stops.
"""

from __future__ import annotations

import asyncio

__all__ = ["check_cancelled"]


def check_cancelled() -> None:
    """Raise ``CancelledError`` if the current task has been cancelled (and not uncancelled)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
