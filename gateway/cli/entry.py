"""The ``runcast`` parser, its subcommands in ``--help`` order, and :func:`main`, which hands
the parsed arguments to the chosen command's runner and returns its exit status.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Sequence

from gateway import flags
from gateway.cli import handoff, serve, show_config

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runcast",
        description=(
            "Gateway for OpenAI-style streams (Assistants runs, Responses, Chat Completions):"
            " proxy, fan-out, resume, tool automation."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = (
        serve.add_parser(commands),
        show_config.add_parser(commands),
        handoff.add_mock_parser(commands),
        handoff.add_loadtest_parser(commands),
    )

    parser.add_argument("--version", action="version", version=f"runcast {_version()}")
    for command in subparsers:
        flags.show_defaults(command)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("runcast")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "mock":
        return handoff.run_mock(ns)
    if ns.command == "loadtest":
        return handoff.run_loadtest(ns)
    if ns.command == "config":
        return show_config.run(ns)
    return serve.run(ns, argv)
