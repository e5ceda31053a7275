"""The options of ``runcast serve`` and ``runcast config``, grouped as ``--help`` shows them.

What each value may be and the defaults ``--help`` names are in ``serve_rules``.
"""

from __future__ import annotations

import argparse

from gateway import flags
from gateway.cli.serve_rules import RULES, help_defaults, size, size_or_off
from gateway.mock.settings import SCENARIO_NAMES

__all__ = ["add_arguments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``runcast serve``, which ``runcast config`` takes too."""
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
    up.add_argument(
        "--upstream-proxy",
        metavar="URL",
        help="HTTP proxy for upstream requests, http://[user:password@]host:port (default: "
        "HTTPS_PROXY / HTTP_PROXY / NO_PROXY, never for a loopback upstream)",
    )
    up.add_argument("--upstream-connect-timeout", type=float, metavar="S")
    up.add_argument("--upstream-first-byte-timeout", type=float, metavar="S")
    up.add_argument(
        "--upstream-answer-timeout",
        type=float,
        metavar="S",
        help="longest wait for the first byte of a non-streamed call's answer (streams: "
        "--upstream-first-byte-timeout)",
    )
    up.add_argument(
        "--upstream-idle-timeout",
        type=float,
        metavar="S",
        help="longest silence between two chunks of a stream",
    )
    up.add_argument(
        "--max-stream-bytes",
        type=size_or_off,
        metavar="SIZE",
        help="most bytes one upstream stream may bring, e.g. 64MiB; past it the stream is ended "
        "with an error event (reason stream_too_large), never resumed; 0 = no limit",
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
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a Host name requests may use besides localhost/127.0.0.1/[::1] (repeatable, '*' "
        "for any; env RUNCAST_ALLOWED_HOSTS); default: loopback names only when bound to "
        "loopback (DNS rebinding), any otherwise",
    )
    sec.add_argument(
        "--max-body-bytes", type=int, metavar="N", help="largest request body (default 4 MiB)"
    )
    sec.add_argument(
        "--body-buffer-bytes",
        type=int,
        metavar="N",
        help="request bodies held at once, past it 503 (default 256 MiB)",
    )

    relay = p.add_argument_group("relay")
    relay.add_argument(
        "--creator-buffer-bytes",
        type=int,
        metavar="N",
        help="bytes waiting for a run's creator before it is cut off (default 4 MiB)",
    )
    relay.add_argument(
        "--creator-write-timeout",
        type=float,
        metavar="S",
        help="longest stalled write to a creator, or of a whole answer, before the client is "
        "cut off (default 30)",
    )
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
        "--redis-namespace",
        metavar="NAME",
        help="prefix of every Redis key and pub/sub channel of this cluster (default rc); two "
        "clusters on one Redis db need their own",
    )
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
        type=size,
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

    flags.check(p, RULES)
    flags.document(p, help_defaults())
