"""Hub channel names: ``run:{run_id}`` carries one run, ``thread:{thread_id}`` all of its runs."""

from __future__ import annotations

__all__ = ["run_channel", "thread_channel"]


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


def thread_channel(thread_id: str) -> str:
    return f"thread:{thread_id}"
