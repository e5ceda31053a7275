"""``runcast mock`` and ``runcast loadtest``: commands whose flags, settings and loop belong to
their own package (``gateway/mock/cli.py``, ``gateway/loadtest/cli.py``); here they get their
place under ``runcast`` and its exit status 2 for invalid settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from gateway.errors import ConfigError
from gateway.loadtest import cli as loadtest_cli
from gateway.mock import cli as mock_cli

__all__ = ["add_loadtest_parser", "add_mock_parser", "run_loadtest", "run_mock"]

_S = TypeVar("_S")


def add_mock_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    mock = commands.add_parser(
        "mock",
        help="run the simulated Assistants, Responses and Chat Completions APIs on their own",
    )
    mock_cli.add_arguments(mock)
    return mock


def add_loadtest_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    loadtest = commands.add_parser(
        "loadtest", help="load-test a streaming endpoint you run (a gateway, the simulator)"
    )
    loadtest_cli.add_arguments(loadtest)
    return loadtest


def run_mock(ns: argparse.Namespace) -> int:
    mock_settings = _settings("mock", mock_cli.settings_from_args, ns)
    if mock_settings is None:
        return 2
    mock_cli.run(mock_settings, ns.host, ns.port)
    return 0


def run_loadtest(ns: argparse.Namespace) -> int:
    load_settings = _settings("loadtest", loadtest_cli.settings_from_args, ns)
    if load_settings is None:
        return 2
    return loadtest_cli.run(load_settings)


def _settings(
    command: str, build: Callable[[argparse.Namespace], _S], ns: argparse.Namespace
) -> _S | None:
    """The command's settings, or None once the reason they are invalid is printed."""
    try:
        return build(ns)
    except ConfigError as exc:
        print(f"runcast {command}: error: {exc}", file=sys.stderr)
        return None
