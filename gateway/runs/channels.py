"""Hub channel names, one prefix per kind.

``run:{run_id}`` carries one run, ``thread:{thread_id}`` all of its runs; ``response:{id}`` one
Responses API response, ``conversation:{id}`` every response of a conversation,
``chat:{completion_id}`` one Chat Completions stream, and ``channel:{name}`` whatever creating
requests named with the ``Runcast-Channel`` header.
"""

from __future__ import annotations

__all__ = [
    "chat_channel",
    "conversation_channel",
    "named_channel",
    "response_channel",
    "run_channel",
    "thread_channel",
]


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


def thread_channel(thread_id: str) -> str:
    return f"thread:{thread_id}"


def response_channel(response_id: str) -> str:
    return f"response:{response_id}"


def conversation_channel(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def chat_channel(completion_id: str) -> str:
    return f"chat:{completion_id}"


def named_channel(name: str) -> str:
    return f"channel:{name}"
