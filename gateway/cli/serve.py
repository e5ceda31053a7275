"""``runcast serve``: its settings, the tools check before it listens, and the server loop.

Settings come from defaults, a TOML file (``--config`` / ``RUNCAST_CONFIG``), ``RUNCAST_*``
variables (one per key: ``RUNCAST_PORT``, ``RUNCAST_HUB_RETENTION``, ...; the upstream key in
``OPENAI_API_KEY`` or the variable ``--upstream-key-env`` names), then flags, each over the one
before (``gateway.config``).

Tool automation (``gateway/tools``): ``--tools my_pkg.tools`` imports the module (the current
directory is searched first, as with ``python -m``) and registers its ``@tool`` functions;
``--tool-webhook NAME=URL`` / ``'*=URL'`` sends calls to HTTP endpoints. With either, runcast
answers ``requires_action`` itself and the run continues for its creator and every subscriber.

The server runs on uvloop. Invalid settings, and tools modules that cannot be imported or define
no ``@tool`` function, exit with status 2 and a one-line message; settings that do not apply
(upstream timeouts and limits without an ``--upstream``) are named in a warning.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from gateway import config, logs, workers
from gateway.cli.serve_flags import add_arguments
from gateway.cli.serve_rules import RULES
from gateway.errors import ConfigError, ListenError
from gateway.flags import host_port
from gateway.settings import Settings
from gateway.tools import ToolAutomation, ToolSettings
from gateway.tools.registry import tool_name

__all__ = ["add_parser", "check_tools", "run", "settings_from_args"]

log = logging.getLogger("runcast")


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    serve = commands.add_parser("serve", help="run the gateway")
    add_arguments(serve)
    return serve


def settings_from_args(ns: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``runcast serve`` arguments, a config file and the
    environment (``gateway.config``)."""
    return config.load(ns, env, rules=RULES).settings


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


def run(ns: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Serve until a signal; ``argv`` (None: ``sys.argv``) is handed on to ``--workers``."""
    try:
        effective = config.load(ns, os.environ, rules=RULES)
        settings = effective.settings
        check_tools(settings.tools)
    except (ConfigError, msgspec.ValidationError, TypeError) as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level, settings.secrets)
    for key in config.ignored(effective):
        log.warning("%s is ignored: it applies to an --upstream, and none is given", key)
    for line in config.unknown_variables(os.environ):
        log.warning("%s", line)
    warn_rootless_upstream(settings)
    if settings.workers > 1 and workers.WORKER_ENV not in os.environ:
        return workers.supervise(
            list(sys.argv[1:] if argv is None else argv),
            count=settings.workers,
            node_id=settings.node_id or workers.generated_node_id(),
            stop_timeout=settings.drain_timeout + settings.shutdown_timeout + workers.STOP_SLACK,
        )
    if settings.metrics_address is not None and workers.WORKER_ENV in os.environ:
        settings = _own_metrics_port(settings, int(os.environ[workers.WORKER_ENV]))
    from redis.exceptions import AuthenticationError

    from gateway.http.runner import serve

    try:
        _run(serve(settings))
    except ListenError as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 1
    except AuthenticationError as exc:
        # Redis answers a start's first command so: no use retrying, nor a traceback to read.
        shown = logs.masked_url(settings.broker)
        print(f"runcast: error: the broker {shown} refused the credentials: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"runcast: error: {exc}", file=sys.stderr)
        return 2
    return 0


def warn_rootless_upstream(settings: Settings) -> None:
    """Warn when ``--upstream`` has no path. Accepted (a server may serve the API at its root),
    but every OpenAI-compatible server runcast knows serves it under /v1: without it each call
    is a 404 from the upstream, and nothing at start said why."""
    if settings.upstream is None:
        return
    parts = urlsplit(settings.upstream.base_url)
    if parts.path not in ("", "/"):
        return
    # A query (shown masked) goes with every call, after the path (upstream/body.build_url).
    root = logs.masked_url(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
    suggested = logs.masked_url(urlunsplit((parts.scheme, parts.netloc, "/v1", parts.query, "")))
    log.warning(
        "--upstream %s has no path: calls go to %s/chat/completions and the like;"
        " OpenAI-compatible servers serve them under /v1 (--upstream %s)",
        logs.masked_url(settings.upstream.base_url.rstrip("/")),
        root,
        suggested,
    )


def _run(coro: Any) -> None:
    """Run the server; then make sure the process ends: what a tool handler holds (a thread
    stuck in sync code, a coroutine that ignores cancellation) must not keep it alive past the
    drain, as neither can be interrupted."""
    try:
        import uvloop
    except ImportError:  # Windows: plain asyncio
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    runner = asyncio.Runner(loop_factory=loop_factory)
    try:
        runner.run(coro)
    finally:
        # asyncio.Runner would cancel what is left and wait for it without a bound.
        stuck = runner.run(_stop_leftovers())
        if stuck:
            log.error("%d task(s) ignored cancellation (%s): exiting without them", *stuck)
            _exit_now()
        runner.close()
    threads = _stuck_threads()
    if threads:
        log.error("%d thread(s) still running (%s): exiting without them", *threads)
        _exit_now()


_LEFTOVER_WAIT = 2.0
"""Seconds given to what is left once the server stopped (tasks, handler threads)."""


async def _stop_leftovers() -> tuple[int, str] | None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if not tasks:
        return None
    _, pending = await asyncio.wait(tasks, timeout=_LEFTOVER_WAIT)
    return (len(pending), ", ".join(sorted(t.get_name() for t in pending))) if pending else None


def _stuck_threads() -> tuple[int, str] | None:
    deadline = time.monotonic() + _LEFTOVER_WAIT
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in others if t.is_alive()]
    return (len(alive), ", ".join(sorted(alive))) if alive else None


def _exit_now() -> None:
    """Exit 0 at once (the drain is over), without waiting for threads at interpreter exit."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _own_metrics_port(settings: Settings, index: int) -> Settings:
    """A worker's ``--metrics-address``: the port plus its index (each worker's counters are its
    own, so each is scraped on its own port; port 0 stays any free one)."""
    assert settings.metrics_address is not None
    host, port = host_port(settings.metrics_address)
    if port == 0:
        return settings
    shown = f"[{host}]" if ":" in host else host
    return msgspec.structs.replace(settings, metrics_address=f"{shown}:{port + index}")
