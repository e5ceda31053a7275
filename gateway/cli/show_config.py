"""``runcast config``: takes the same options as ``serve`` and prints the settings they make as
TOML, secrets masked, each value with its source (``gateway.config``).
"""

from __future__ import annotations

import argparse
import os
import sys

from gateway import config
from gateway.cli.serve_flags import add_arguments
from gateway.cli.serve_rules import RULES
from gateway.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    shown = commands.add_parser(
        "config",
        help="print the effective configuration of runcast serve with these options (TOML)",
        description="Print the settings runcast serve would run with, given these options, "
        "RUNCAST_CONFIG and the RUNCAST_* variables: TOML, secrets masked, each value's source.",
    )
    add_arguments(shown)
    return shown


def run(ns: argparse.Namespace) -> int:
    try:
        print(config.render(config.load(ns, os.environ, rules=RULES)), end="")
    except ConfigError as exc:
        print(f"runcast config: error: {exc}", file=sys.stderr)
        return 2
    for line in config.unknown_variables(os.environ):
        print(f"runcast config: warning: {line}", file=sys.stderr)
    return 0
