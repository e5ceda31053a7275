"""The simulator's configuration: one frozen :class:`MockSettings` passed down from ``create_app``.

Every knob has a default that makes ``runcast mock`` behave like a small, fast Assistants API; tests
shrink the delays and the expiry, load tests raise the delta count. Values are checked once, here,
so the rest of the package can trust them.
"""

from __future__ import annotations

import math

import msgspec

from gateway.errors import ConfigError

__all__ = ["MockSettings"]

SCENARIO_NAMES = (
    "text",
    "tool_call",
    "parallel_tool_calls",
    "multi_round",
    "error",
    "failed",
    "incomplete",
    "drop",
    "drop_mid_tool_call",
    "drop_after_requires_action",
    "slow_start",
    "rate_limited",
    "server_error",
)


class MockSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Knobs of the simulated Assistants API.

    Text: each assistant message is ``deltas`` ``thread.message.delta`` events of
    ``tokens_per_delta`` words, drawn from a generator seeded with ``seed`` (same seed, same text),
    ``delay_ms`` apart (0 = as fast as the socket takes them). Runs: a run still waiting in
    ``requires_action`` ``expires_in`` seconds after its creation expires (spec §5; upstream
    ``expires_at = created_at + 600``), ``slow_start_ms`` before the first byte of a ``slow_start``
    run, ``retry_after_s`` on a ``rate_limited`` 429,
    ``poll_after_ms`` sent as ``openai-poll-after-ms``. Memory: at most ``max_threads`` threads and
    ``max_assistants`` assistants, each dropped after ``ttl_s`` seconds unused; per thread at most
    ``max_messages_per_thread`` messages and ``max_runs_per_thread`` runs (oldest dropped first).
    Streaming: frames are coalesced into writes of about ``batch_bytes``; text is generated
    ``yield_every`` deltas at a time, and with no listener the engine yields to the loop after each
    such chunk.

    Responses and Chat Completions (``responses/``, ``chat/``): at most ``max_responses`` stored
    responses and ``max_conversations`` conversations (LRU, ``ttl_s``), a response with ``store:
    false`` only until it ends, a conversation's latest ``max_messages_per_thread`` items; a
    background response can be
    re-streamed for ``stream_window_s`` seconds after its creation (OpenAI: 5 minutes). The wire
    deviations of other servers (reference responses-and-chat.md §1.5, §5), off by default and each
    also switchable per request (``wire.py``): a ``keepalive`` event after every
    ``keepalive_every`` deltas, data-only Responses frames (``data_only``), ``data: [DONE]`` after
    a Responses terminal event (``responses_done``), chat tool-call deltas without ``index``
    (``chat_no_index``).
    """

    scenario: str = "text"
    deltas: int = 16
    tokens_per_delta: int = 3
    delay_ms: float = 0.0
    seed: int = 0
    model: str = "gpt-4o"
    expires_in: float = 600.0
    slow_start_ms: float = 1000.0
    retry_after_s: int = 1
    poll_after_ms: int = 50
    max_assistants: int = 1_000
    max_threads: int = 10_000
    max_messages_per_thread: int = 1_000
    max_runs_per_thread: int = 100
    ttl_s: float = 3_600.0
    batch_bytes: int = 65_536
    yield_every: int = 512
    max_responses: int = 10_000
    max_conversations: int = 10_000
    stream_window_s: float = 300.0
    keepalive_every: int = 0
    data_only: bool = False
    responses_done: bool = False
    chat_no_index: bool = False

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIO_NAMES:
            raise ConfigError(
                f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIO_NAMES)}"
            )
        positive = {
            "deltas": self.deltas,
            "tokens_per_delta": self.tokens_per_delta,
            "expires_in": self.expires_in,
            "max_assistants": self.max_assistants,
            "max_threads": self.max_threads,
            "max_messages_per_thread": self.max_messages_per_thread,
            "max_runs_per_thread": self.max_runs_per_thread,
            "ttl_s": self.ttl_s,
            "batch_bytes": self.batch_bytes,
            "yield_every": self.yield_every,
            "max_responses": self.max_responses,
            "max_conversations": self.max_conversations,
            "stream_window_s": self.stream_window_s,
        }
        for name, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be > 0 and finite, got {value}")
        non_negative = {
            "delay_ms": self.delay_ms,
            "slow_start_ms": self.slow_start_ms,
            "retry_after_s": self.retry_after_s,
            "poll_after_ms": self.poll_after_ms,
            "keepalive_every": self.keepalive_every,
        }
        for name, value in non_negative.items():
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be >= 0 and finite, got {value}")
        if not self.model:
            raise ConfigError("model must not be empty")
