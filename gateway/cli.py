"""The ``runcast`` command: ``runcast serve`` (the gateway), ``runcast config`` (its effective
settings), ``runcast mock`` (the simulator) and ``runcast loadtest``.

Settings come from defaults, a TOML file (``--config`` / ``RUNCAST_CONFIG``), ``RUNCAST_*``
variables (one per key: ``RUNCAST_PORT``, ``RUNCAST_HUB_RETENTION``, ...; the upstream key in
``OPENAI_API_KEY`` or the variable ``--upstream-key-env`` names), then flags, each over the one
before (``gateway.config``). ``runcast config`` takes the same options as ``serve`` and prints
the result as TOML, secrets masked, each value with its source.

Tool automation (``gateway/tools``): ``--tools my_pkg.tools`` imports the module (the current
directory is searched first, as with ``python -m``) and registers its ``@tool`` functions;
``--tool-webhook NAME=URL`` / ``'*=URL'`` sends calls to HTTP endpoints. With either, runcast
answers ``requires_action`` itself and the run continues for its creator and every subscriber.

The server runs on uvloop. Invalid settings, and tools modules that cannot be imported or define
no ``@tool`` function, exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gateway import config, flags, logs, workers
from gateway.errors import ConfigError, ListenError
from gateway.hub import HubSettings
from gateway.loadtest import cli as loadtest_cli
from gateway.mock import cli as mock_cli
from gateway.mock.settings import SCENARIO_NAMES, MockSettings
from gateway.settings import Settings
from gateway.tools import ToolAutomation, ToolSettings
from gateway.tools.registry import tool_name
from gateway.upstream import UpstreamSettings

__all__ = ["build_parser", "check_tools", "main", "settings_from_args"]


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    net = p.add_argument_group("listening")
    net.add_argument("--host", help="interface to bind (default 127.0.0.1; env RUNCAST_HOST)")
    net.add_argument("--port", type=int, help="port (default 8080; env RUNCAST_PORT)")
    net.add_argument(
        "--header-timeout",
        type=float,
        metavar="S",
        help="a request's head must arrive within S of the connection opening or of the "
        "previous response; idle keep-alive connections close after S too",
    )
    net.add_argument(
        "--body-timeout", type=float, metavar="S", help="a request body must arrive within S (408)"
    )
    net.add_argument(
        "--backlog",
        type=int,
        metavar="N",
        help="connections the kernel completes before runcast accepts them, for connection "
        "storms (env RUNCAST_BACKLOG; default: 0, meaning net.core.somaxconn, the kernel's ceiling)",
    )
    net.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open client connections; past N new ones get 503 and are closed "
        "(default 0: the open-file limit minus 384)",
    )
    net.add_argument(
        "--max-pending-per-client",
        type=int,
        metavar="N",
        help="thread streams one client address may hold open before their first run",
    )

    up = p.add_argument_group("upstream")
    up.add_argument(
        "--upstream",
        metavar="URL",
        help="upstream base URL incl. /v1 (env RUNCAST_UPSTREAM_URL); default: embedded simulator",
    )
    up.add_argument(
        "--upstream-key-env",
        metavar="NAME",
        default="OPENAI_API_KEY",
        help="variable holding the upstream key (default OPENAI_API_KEY); unset: callers' keys",
    )
    up.add_argument("--upstream-organization", metavar="ORG", help="OpenAI-Organization header")
    up.add_argument("--upstream-project", metavar="PROJECT", help="OpenAI-Project header")
    up.add_argument("--upstream-connect-timeout", type=float, metavar="S")
    up.add_argument("--upstream-first-byte-timeout", type=float, metavar="S")
    up.add_argument(
        "--upstream-idle-timeout",
        type=float,
        metavar="S",
        help="longest silence between two chunks of a stream",
    )

    sec = p.add_argument_group("security")
    sec.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="runcast API key for callers (repeatable; prefer env RUNCAST_API_KEYS=k1,k2)",
    )
    sec.add_argument(
        "--token-secret",
        metavar="SECRET",
        help="HS256 subscribe-token secret, >= 32 bytes (prefer env RUNCAST_TOKEN_SECRET)",
    )
    sec.add_argument(
        "--token-ttl",
        type=float,
        metavar="S",
        help="lifetime of minted subscribe tokens (default 3600)",
    )
    sec.add_argument(
        "--subscribe-auth",
        choices=("auto", "token", "open"),
        help="auto (default): open with the embedded simulator, tokens otherwise",
    )
    sec.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allowed browser origin (repeatable, '*' for any; env RUNCAST_CORS_ORIGINS)",
    )
    sec.add_argument(
        "--max-body-bytes", type=int, metavar="N", help="largest request body (default 4 MiB)"
    )

    relay = p.add_argument_group("relay")
    relay.add_argument(
        "--creator-buffer-bytes",
        type=int,
        metavar="N",
        help="bytes waiting for a run's creator before it is cut off (default 4 MiB)",
    )
    relay.add_argument("--creator-write-timeout", type=float, metavar="S")
    relay.add_argument(
        "--recovery-timeout",
        type=float,
        metavar="S",
        help="how long to poll a run whose stream broke off (default 30, 0 disables)",
    )
    relay.add_argument(
        "--lease-ttl",
        type=float,
        metavar="S",
        help="a node's hold on a run it pumps, renewed every third of it; with --broker "
        "redis://, another node takes a run over this long after its owner died (default 10)",
    )
    relay.add_argument(
        "--expiry-grace",
        type=float,
        metavar="S",
        help="after an unanswered requires_action's expires_at, wait this long, then publish "
        "the run's final state (default 2)",
    )
    relay.add_argument(
        "--drain-timeout",
        type=float,
        metavar="S",
        help="on SIGTERM/SIGINT, refuse new runs and subscriptions and let running runs finish "
        "for up to S seconds, then end every stream (default 25; 0 ends them at once)",
    )

    cluster = p.add_argument_group("cluster (Redis mode)")
    cluster.add_argument(
        "--broker",
        metavar="URL",
        help="'memory' (default: one process) or redis://HOST:PORT/DB, shared by every node of a "
        "cluster (env RUNCAST_BROKER); Redis mode needs --token-secret",
    )
    cluster.add_argument("--node-id", metavar="ID", help="this node's name (default: generated)")
    cluster.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N processes sharing --port (SO_REUSEPORT) and the broker, each its own node "
        "(default 1; more needs --broker redis://)",
    )

    hub = p.add_argument_group("subscribers")
    hub.add_argument(
        "--history-events", type=int, metavar="N", help="events kept per channel for resume"
    )
    hub.add_argument(
        "--history-bytes", type=int, metavar="N", help="bytes kept per channel for resume"
    )
    hub.add_argument(
        "--retention", type=float, metavar="S", help="how long a finished run's history stays"
    )
    hub.add_argument(
        "--subscriber-buffer-bytes",
        type=int,
        metavar="N",
        help="output buffer per subscriber before it is cut off",
    )
    hub.add_argument("--max-subscribers-per-channel", type=int, metavar="N")
    hub.add_argument("--max-subscribers", type=int, metavar="N")
    hub.add_argument(
        "--heartbeat", type=float, metavar="S", help="SSE comment / WebSocket ping period"
    )
    hub.add_argument(
        "--coalesce-ms",
        type=float,
        metavar="MS",
        help="events of a channel published within MS go to each subscriber in one write; adds "
        "up to MS of latency (terminal events and done are never held; 0 disables)",
    )
    hub.add_argument(
        "--memory-budget",
        type=_size,
        metavar="SIZE",
        help="bytes all channels may retain (history, snapshots), e.g. 512MiB; over it, ended "
        "channels go first, then the oldest history (default 256MiB)",
    )

    tools = p.add_argument_group("tool automation")
    tools.add_argument(
        "--tools",
        action="append",
        metavar="MODULE",
        help="Python module whose @tool functions answer tool calls (repeatable)",
    )
    tools.add_argument(
        "--tool-webhook",
        action="append",
        metavar="NAME=URL",
        help="POST calls of tool NAME to URL (repeatable; '*=URL' for every other tool)",
    )
    tools.add_argument(
        "--tool-webhook-secret",
        metavar="SECRET",
        help="HMAC key signing webhook requests (prefer env RUNCAST_TOOL_WEBHOOK_SECRET)",
    )
    tools.add_argument(
        "--tool-policy",
        choices=("all", "error"),
        help="all (default): answer an action only when every call has a handler; "
        "error: answer unhandled calls with an error output",
    )
    tools.add_argument(
        "--tool-timeout", type=float, metavar="S", help="seconds per tool call (default 30)"
    )
    tools.add_argument(
        "--tool-concurrency",
        type=int,
        metavar="N",
        help="tool calls running at once, across all runs (default 32)",
    )
    tools.add_argument(
        "--tool-max-rounds",
        type=int,
        metavar="N",
        help="submissions per run before runcast cancels it (default 10)",
    )
    tools.add_argument(
        "--tool-on-error",
        choices=("output", "cancel"),
        help='a failing call: output (default) submits {"error": ...}; cancel cancels the run',
    )
    tools.add_argument(
        "--tool-expiry-margin",
        type=float,
        metavar="S",
        help="seconds kept free before an action's expires_at for the submission (default 5)",
    )
    tools.add_argument(
        "--show-requires-action",
        action="store_true",
        default=None,
        help="show the creator a requires_action that runcast answers itself (default: hidden)",
    )
    tools.add_argument(
        "--tool-events-to-creator",
        action="store_true",
        default=None,
        help="also put runcast.tool_call.* events into the creator's response",
    )

    sim = p.add_argument_group("embedded simulator (without --upstream)")
    sim.add_argument(
        "--sim-port", type=int, metavar="PORT", help="simulator port (default: any free port)"
    )
    sim.add_argument(
        "--sim-scenario", choices=SCENARIO_NAMES, help="default scenario of simulated runs"
    )
    sim.add_argument(
        "--sim-delay-ms", type=float, metavar="MS", help="delay between simulated deltas"
    )
    sim.add_argument("--sim-deltas", type=int, metavar="N", help="deltas per simulated message")

    p.add_argument(
        "--config",
        metavar="PATH",
        help="TOML file of settings, under the environment and the flags (env RUNCAST_CONFIG)",
    )
    p.add_argument(
        "--no-viewer",
        dest="viewer",
        action="store_false",
        default=None,
        help="do not serve the live viewer page at / nor its channel listing (default: served)",
    )
    logging_ = p.add_argument_group("logs and metrics")
    logging_.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or json: one object per line with the run/thread ids in context "
        "(default text)",
    )
    logging_.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="(default info)"
    )
    logging_.add_argument(
        "--access-log",
        choices=("on", "off"),
        help="a line per request; /healthz, /readyz and /metrics never (default on)",
    )
    logging_.add_argument(
        "--metrics",
        choices=("on", "off"),
        help="Prometheus metrics at GET /metrics (default on)",
    )
    logging_.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve /metrics on a listener of its own at HOST:PORT instead of the main one "
        "(default: the main listener)",
    )

    flags.check(p, _SERVE_RULES)
    flags.document(p, _serve_defaults())


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS.update({"k": 1024, "m": 1024**2, "g": 1024**3})
_SIZE_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3})


def _size(raw: str) -> int:
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


_SECONDS = flags.greater_than(0)
_COUNT = flags.greater_than(0, int)
_SERVE_RULES: Mapping[str, flags.Rule] = {
    "port": flags.port,
    "header_timeout": _SECONDS,
    "body_timeout": _SECONDS,
    "backlog": flags.at_least(0, int),
    "max_connections": flags.at_least(0, int),
    "max_pending_per_client": _COUNT,
    "upstream_connect_timeout": _SECONDS,
    "upstream_first_byte_timeout": _SECONDS,
    "upstream_idle_timeout": _SECONDS,
    "token_ttl": _SECONDS,
    "cors_origin": flags.origin,
    "max_body_bytes": _COUNT,
    "creator_buffer_bytes": _COUNT,
    "creator_write_timeout": _SECONDS,
    "recovery_timeout": flags.at_least(0),
    "expiry_grace": flags.at_least(0),
    "lease_ttl": _SECONDS,
    "history_events": _COUNT,
    "history_bytes": _COUNT,
    "retention": _SECONDS,
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
    "memory_budget": _size,
    "workers": _COUNT,
}


def _serve_defaults() -> dict[str, object]:
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
        "upstream_idle_timeout": f"{upstream['idle_timeout']:g}",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runcast",
        description="Gateway for OpenAI-style Assistants run streams: proxy, fan-out, resume.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    _add_serve_arguments(serve)
    shown = commands.add_parser(
        "config",
        help="print the effective configuration of runcast serve with these options (TOML)",
        description="Print the settings runcast serve would run with, given these options, "
        "RUNCAST_CONFIG and the RUNCAST_* variables: TOML, secrets masked, each value's source.",
    )
    _add_serve_arguments(shown)
    mock = commands.add_parser("mock", help="run the simulated Assistants API on its own")
    mock_cli.add_arguments(mock)
    loadtest = commands.add_parser(
        "loadtest", help="load-test a streaming endpoint you run (a gateway, the simulator)"
    )
    loadtest_cli.add_arguments(loadtest)

    parser.add_argument("--version", action="version", version=f"runcast {_version()}")
    for command in (serve, shown, mock, loadtest):
        flags.show_defaults(command)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("runcast")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def settings_from_args(ns: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``runcast serve`` arguments, a config file and the
    environment (``gateway.config``)."""
    return config.load(ns, env, rules=_SERVE_RULES).settings


def check_tools(tools: ToolSettings) -> None:
    """Import the tools modules now, so a bad one stops ``runcast serve`` before it listens.

    The current directory goes first on ``sys.path``: a console script's ``sys.path[0]`` is its
    own directory, so ``--tools my_tools`` would otherwise not find ``./my_tools.py``.
    """
    if not tools.modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    # Imports every module and checks names: duplicates, a tool with a handler and a webhook.
    ToolAutomation(tools)
    for module in tools.modules:
        values = vars(importlib.import_module(module)).values()
        if not any(callable(value) and tool_name(value) is not None for value in values):
            raise ConfigError(f"tools module {module!r} defines no @tool function")


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # Windows: plain asyncio
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "mock":
        try:
            mock_settings = mock_cli.settings_from_args(ns)
        except ConfigError as exc:
            print(f"runcast mock: error: {exc}", file=sys.stderr)
            return 2
        mock_cli.run(mock_settings, ns.host, ns.port)
        return 0
    if ns.command == "loadtest":
        try:
            load_settings = loadtest_cli.settings_from_args(ns)
        except ConfigError as exc:
            print(f"runcast loadtest: error: {exc}", file=sys.stderr)
            return 2
        return loadtest_cli.run(load_settings)
    if ns.command == "config":
        try:
            print(config.render(config.load(ns, os.environ, rules=_SERVE_RULES)), end="")
        except ConfigError as exc:
            print(f"runcast config: error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        settings = settings_from_args(ns, os.environ)
        check_tools(settings.tools)
    except (ConfigError, msgspec.ValidationError, TypeError) as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level, settings.secrets)
    if settings.workers > 1 and workers.WORKER_ENV not in os.environ:
        return workers.supervise(
            list(sys.argv[1:] if argv is None else argv),
            count=settings.workers,
            node_id=settings.node_id or workers.generated_node_id(),
        )
    from gateway.http.runner import serve

    try:
        _run(serve(settings))
    except ListenError as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
