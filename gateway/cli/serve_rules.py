"""What the values of ``runcast serve``'s options may be (the rules ``gateway.flags`` checks
them by, on the command line and in ``gateway.config``'s other layers alike) and the defaults its
``--help`` names.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import msgspec

from gateway import flags
from gateway.hub import HubSettings
from gateway.mock.settings import MockSettings
from gateway.settings import MAX_BACKLOG, Settings
from gateway.upstream import UpstreamSettings

__all__ = ["RULES", "help_defaults", "size", "size_or_off"]


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS.update({"k": 1024, "m": 1024**2, "g": 1024**3})
_SIZE_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3})


def size(raw: str) -> int:
    """A byte count: ``268435456``, ``256MiB``, ``256M`` (binary), ``300MB`` (decimal); > 0."""
    text = raw.strip().lower()
    number = text.rstrip("kmgib")
    unit = text[len(number) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {raw!r} (e.g. 256MiB)") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"must be > 0: {raw!r}")
    return int(value)


def size_or_off(raw: str) -> int:
    """A byte count as :func:`size` takes it, or ``0`` for no limit."""
    return 0 if raw.strip() == "0" else size(raw)


_SECONDS = flags.greater_than(0)
_COUNT = flags.greater_than(0, int)
MAX_WORKERS = 256
"""Each worker is a whole gateway (some 60 MB idle): a typo's 10,000 would take the machine."""


def _workers(raw: str) -> int:
    value: int = _COUNT(raw)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WORKERS}, got {raw}")
    return value


def _backlog(raw: str) -> int:
    value: int = flags.at_least(0, int)(raw)
    if value > MAX_BACKLOG:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BACKLOG}, got {raw}")
    return value


RULES: Mapping[str, flags.Rule] = {
    "port": flags.port,
    "header_timeout": _SECONDS,
    "body_timeout": _SECONDS,
    "backlog": _backlog,
    "max_connections": flags.at_least(0, int),
    "max_pending_per_client": _COUNT,
    "upstream_connect_timeout": _SECONDS,
    "upstream_first_byte_timeout": _SECONDS,
    "upstream_answer_timeout": _SECONDS,
    "upstream_idle_timeout": _SECONDS,
    "token_ttl": _SECONDS,
    "cors_origin": flags.origin,
    "allowed_host": flags.host_name,
    "max_body_bytes": _COUNT,
    "body_buffer_bytes": _COUNT,
    "creator_buffer_bytes": _COUNT,
    "creator_write_timeout": _SECONDS,
    "recovery_timeout": flags.at_least(0),
    "expiry_grace": flags.at_least(0),
    "lease_ttl": _SECONDS,
    "history_events": _COUNT,
    "history_bytes": _COUNT,
    # HubSettings takes 0 to inf exclusive (">= 0"): infinity refused here names this rule.
    "retention": flags.greater_than(0, finite=True),
    "subscriber_buffer_bytes": _COUNT,
    "max_subscribers_per_channel": _COUNT,
    "max_subscribers": _COUNT,
    "heartbeat": flags.at_least(0),
    "coalesce_ms": flags.at_least(0),
    "tool_timeout": _SECONDS,
    "tool_concurrency": _COUNT,
    "tool_max_rounds": _COUNT,
    "tool_expiry_margin": flags.at_least(0),
    "sim_port": flags.port,
    "sim_delay_ms": flags.at_least(0),
    "sim_deltas": _COUNT,
    "memory_budget": size,
    "max_stream_bytes": size_or_off,
    "workers": _workers,
}


def help_defaults() -> dict[str, object]:
    """What ``--help`` shows for the serve options whose default comes from the settings."""
    settings, hub, sim = Settings(), HubSettings(), MockSettings()
    upstream = {f.name: f.default for f in msgspec.structs.fields(UpstreamSettings)}
    return {
        "header_timeout": f"{settings.header_timeout:g}",
        "body_timeout": f"{settings.body_timeout:g}",
        "max_pending_per_client": hub.max_pending_channels_per_client,
        "upstream_organization": "none",
        "upstream_project": "none",
        "upstream_connect_timeout": f"{upstream['connect_timeout']:g}",
        "upstream_first_byte_timeout": f"{upstream['first_byte_timeout']:g}",
        "upstream_answer_timeout": f"{upstream['answer_timeout']:g}",
        "upstream_idle_timeout": f"{upstream['idle_timeout']:g}",
        "max_stream_bytes": flags.size(str(upstream["max_stream_bytes"])),
        "api_key": "none",
        "token_secret": "an ephemeral one, generated at start",
        "cors_origin": "none, CORS off",
        "creator_write_timeout": f"{settings.creator_write_timeout:g}",
        "history_events": f"{hub.max_history_events:,}",
        "history_bytes": flags.size(str(hub.max_history_bytes)),
        "retention": f"{hub.retention:g}",
        "subscriber_buffer_bytes": flags.size(str(hub.subscriber_buffer_bytes)),
        "max_subscribers_per_channel": f"{hub.max_subscribers_per_channel:,}",
        "max_subscribers": f"{hub.max_subscribers:,}",
        "heartbeat": f"{hub.heartbeat_interval:g}, 0 disables",
        "coalesce_ms": f"{hub.coalesce_ms:g}",
        "tools": "none",
        "config": "none",
        "tool_webhook": "none",
        "tool_webhook_secret": "none",
        "tool_events_to_creator": "off",
        "sim_scenario": sim.scenario,
        "sim_delay_ms": f"{sim.delay_ms:g}",
        "sim_deltas": sim.deltas,
    }
