"""Configuration of tool automation: one frozen, strictly validated settings object.

``ToolSettings`` is built by the CLI (``--tools``, ``--tool-webhook``, ``--tool-*`` flags) or by code
that embeds runcast, and passed down to :class:`~gateway.tools.automation.ToolAutomation`.
``parse_webhook_args`` turns repeated ``NAME=URL`` / ``*=URL`` arguments into the ``webhooks`` map.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from gateway.errors import ConfigError
from gateway.logs import masked_url

__all__ = ["FALLBACK", "Policy", "ToolSettings", "parse_webhook_args"]

FALLBACK = "*"
"""The webhook name that answers every tool with no handler of its own."""

Policy = Literal["all", "error"]
OnError = Literal["output", "cancel"]


MIN_WEBHOOK_SECRET_BYTES = 16
"""A shorter HMAC key is guessable, and as a secret masked in logs and outputs it would mask
ordinary text."""


class ToolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How runcast answers ``requires_action`` by itself (see ``gateway/tools/automation.py``).

    - ``modules``: Python modules whose ``@tool`` functions are registered.
    - ``webhooks``: tool name -> URL; the name ``"*"`` answers every tool without another handler.
    - ``webhook_secret``: HMAC key signing every webhook request (required when webhooks are set:
      receivers must be able to tell runcast's requests from anyone else's), at least
      ``MIN_WEBHOOK_SECRET_BYTES`` bytes.
    - ``policy``: ``"all"`` submits only when every call of an action has a handler, leaving
      partial actions to the client; ``"error"`` answers unhandled calls with an error output.
    - ``on_error``: ``"output"`` turns a raising / timed-out handler or invalid arguments into an
      ``{"error": ...}`` output the model can recover from; ``"cancel"`` cancels the run instead.
    - ``timeout``: seconds one call may take (webhook retries included).
    - ``concurrency``: calls running at once across all runs (each sync Python handler call in a
      thread of its own); ``threads``: how many sync handlers may be stuck (still running after
      their call timed out or was cancelled: a thread cannot be interrupted) before further sync
      calls are refused at once with an error saying so.
    - ``max_rounds``: submissions per run before runcast cancels it (a model stuck in a tool loop);
      for a Responses or Chat stream, follow-ups per chain before runcast stops answering.
    - ``expiry_margin``: seconds kept free before the action's ``expires_at`` for the submission
      itself; handlers that cannot finish before ``expires_at - expiry_margin`` cancel the run
      (spec §5: a run missing its deadline expires anyway).
    - ``webhook_retries`` / ``webhook_backoff``: extra attempts after a connection error or 5xx,
      waiting ``webhook_backoff * 2**n`` seconds before attempt ``n + 1``.
    - ``max_output_bytes``: largest output accepted from any handler (the executor checks it; a
      webhook's body is bounded as it is read), past it the call fails (an error output, as for a
      timeout); a
      chat follow-up carries every earlier output again, so an unbounded one would grow each
      round's request by its size.
    - ``show_requires_action``: whether the creator's stream shows a ``requires_action`` that
      runcast answers itself (hidden by default so an app that also submits cannot race runcast).
    - ``emit_tool_events_to_creator``: whether ``runcast.tool_call.*`` events also go to the
      creator's OpenAI-format response (subscriber channels always get them); Assistants and
      Responses creators only (a chat creator's SDK would read them as chunks).
    """

    modules: tuple[str, ...] = ()
    webhooks: dict[str, str] = msgspec.field(default_factory=dict)
    webhook_secret: str | None = None
    policy: Policy = "all"
    on_error: OnError = "output"
    timeout: float = 30.0
    concurrency: int = 32
    threads: int = 8
    max_rounds: int = 10
    expiry_margin: float = 5.0
    webhook_retries: int = 2
    webhook_backoff: float = 0.25
    max_output_bytes: int = 1 << 20
    show_requires_action: bool = False
    emit_tool_events_to_creator: bool = False

    def __post_init__(self) -> None:
        # ConfigError (not ValueError) so a bad value from the CLI reads as a config problem.
        if self.policy not in ("all", "error"):
            raise ConfigError(f"tool policy must be 'all' or 'error', not {self.policy!r}")
        if self.on_error not in ("output", "cancel"):
            raise ConfigError(f"tool on_error must be 'output' or 'cancel', not {self.on_error!r}")
        for field, value in (("timeout", self.timeout), ("webhook_backoff", self.webhook_backoff)):
            if not value > 0:
                raise ConfigError(f"tool {field} must be > 0, got {value!r}")
        for field, number in (
            ("concurrency", self.concurrency),
            ("threads", self.threads),
            ("max_rounds", self.max_rounds),
            ("max_output_bytes", self.max_output_bytes),
        ):
            if number < 1:
                raise ConfigError(f"tool {field} must be >= 1, got {number!r}")
        if self.webhook_retries < 0:
            raise ConfigError(f"tool webhook_retries must be >= 0, got {self.webhook_retries!r}")
        if self.expiry_margin < 0:
            raise ConfigError(f"tool expiry_margin must be >= 0, got {self.expiry_margin!r}")
        for name, url in self.webhooks.items():
            _check_webhook(name, url)
        if self.webhooks and not self.webhook_secret:
            raise ConfigError(
                "tool webhooks need a signing secret (--tool-webhook-secret or "
                "RUNCAST_TOOL_WEBHOOK_SECRET)"
            )
        if self.webhook_secret and len(self.webhook_secret.encode()) < MIN_WEBHOOK_SECRET_BYTES:
            raise ConfigError(
                f"the tool webhook secret must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes"
            )

    @property
    def fallback_webhook(self) -> str | None:
        return self.webhooks.get(FALLBACK)

    def __repr__(self) -> str:
        # Settings reach logs and tracebacks; the signing secret must not.
        return (
            f"ToolSettings(modules={self.modules!r}, webhooks={sorted(self.webhooks)!r}, "
            f"webhook_secret={'***' if self.webhook_secret else None}, policy={self.policy!r}, "
            f"on_error={self.on_error!r}, timeout={self.timeout!r}, "
            f"max_rounds={self.max_rounds!r})"
        )


def parse_webhook_args(specs: Iterable[str]) -> dict[str, str]:
    """Parse repeated ``NAME=URL`` arguments (``*=URL`` for the fallback) into a name -> URL map."""
    webhooks: dict[str, str] = {}
    for spec in specs:
        name, sep, url = spec.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url or "://" in name:  # a URL without its NAME=
            raise ConfigError(
                f"tool webhook must look like NAME=URL or '*=URL',"
                f" got {masked_url(spec, path=False)!r}"
            )
        if name in webhooks:
            raise ConfigError(f"tool webhook for {masked_url(name)!r} given twice")
        _check_webhook(name, url)
        webhooks[name] = url
    return webhooks


def _check_webhook(name: str, url: str) -> None:
    if not name:
        raise ConfigError("tool webhook name must not be empty")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # `http://[bad/x`: an IPv6 host not closed
        raise ConfigError(
            f"tool webhook URL for {masked_url(name)!r} is not a URL: {exc}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"tool webhook URL for {masked_url(name)!r} must be http(s)://...,"
            f" got {masked_url(url, path=False)!r}"
        )
