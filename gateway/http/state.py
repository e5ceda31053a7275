"""Typed application state: the ``web.AppKey`` of each long-lived object of the gateway app.

The objects themselves are created and closed by the ``cleanup_ctx`` functions in ``app.py``;
handlers only read them through these keys.
"""

from __future__ import annotations

from aiohttp import web

from gateway.hub import Broker
from gateway.runs.registry import RelayRegistry
from gateway.settings import Settings
from gateway.tools import ToolAutomation
from gateway.upstream import UpstreamClient

from .auth import CallerAuth, TokenAuthority
from .body_budget import BodyBudget
from .connections import SubscriberConnections
from .drain import Drain

__all__ = [
    "BROKER",
    "CALLERS",
    "CONNECTIONS",
    "DRAIN",
    "RELAYS",
    "SETTINGS",
    "TOKENS",
    "TOOL_AUTOMATION",
    "UPSTREAM",
    "UPSTREAM_KEY",
    "UPSTREAM_URL",
]

SETTINGS = web.AppKey("runcast.settings", Settings)
UPSTREAM_URL = web.AppKey("runcast.upstream_url", str)
UPSTREAM_KEY = web.AppKey("runcast.upstream_key", bytes)
"""The upstream key runcast holds (b"" when none), to scrub it from relayed error bodies."""
TOOL_AUTOMATION = web.AppKey("runcast.tool_automation", ToolAutomation)
"""Set only when tool automation is configured."""
UPSTREAM = web.AppKey("runcast.upstream", UpstreamClient)
BROKER = web.AppKey("runcast.broker", Broker)
RELAYS = web.AppKey("runcast.relays", RelayRegistry)
CALLERS = web.AppKey("runcast.callers", CallerAuth)
BODY_BUDGET = web.AppKey("runcast.body_budget", BodyBudget)
TOKENS = web.AppKey("runcast.tokens", TokenAuthority)
CONNECTIONS = web.AppKey("runcast.connections", SubscriberConnections)
DRAIN = web.AppKey("runcast.drain", Drain)
"""Set on SIGTERM/SIGINT: new runs and subscriptions are refused (``drain.py``)."""
