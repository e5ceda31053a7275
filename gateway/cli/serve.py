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
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gateway import config, logs, workers
from gateway.cli.serve_flags import add_arguments
from gateway.cli.serve_rules import RULES
from gateway.errors import ConfigError, ListenError
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


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # Windows: plain asyncio
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)
