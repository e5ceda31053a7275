"""Flag values checked as they are parsed, and every flag's default shown in ``--help``.

A value a rule refuses is an argparse error naming the flag (``runcast serve: error: argument
--heartbeat: must be >= 0, got -1``, exit status 2). Rules and documented defaults are attached
to a parser already built, by destination name (:func:`check`, :func:`document`), so the option
declarations stay as they are; :func:`show_defaults` adds ``(default X)`` to every option that
has a real argparse default and does not state it yet (:func:`states_default`).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "at_least",
    "check",
    "document",
    "greater_than",
    "host_name",
    "host_port",
    "is_origin",
    "origin",
    "port",
    "show_defaults",
    "size",
    "states_default",
]

Rule = Callable[[str], Any]


def greater_than(
    minimum: float, kind: Callable[[str], Any] = float, *, finite: bool = False
) -> Rule:
    """``finite``: infinity is refused too, in the rule's own words (for a setting whose
    settings type would refuse it later, by a rule of its own)."""

    def rule(raw: str) -> Any:
        value = _convert(raw, kind)
        if not value > minimum:
            raise argparse.ArgumentTypeError(f"must be > {minimum:g}, got {raw}")
        if finite and value == math.inf:
            raise argparse.ArgumentTypeError(f"must be a finite number > {minimum:g}, got {raw}")
        return value

    return rule


def at_least(minimum: float, kind: Callable[[str], Any] = float) -> Rule:
    def rule(raw: str) -> Any:
        value = _convert(raw, kind)
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {raw}")
        return value

    return rule


def port(raw: str) -> int:
    value: int = _convert(raw, int)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 0..65535, got {raw}")
    return value


def is_origin(value: str) -> bool:
    """``*`` or a browser origin: ``http(s)://host[:port]``, nothing after it (RFC 6454 §6.2)."""
    if value == "*":
        return True
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and f"{parts.scheme}://{parts.netloc}" == value
        and "@" not in parts.netloc
    )


def host_port(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as (host, port); ValueError otherwise."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT: {raw!r}")
    return host.strip("[]"), int(port)


def origin(raw: str) -> str:
    if not is_origin(raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not an origin: use scheme://host[:port] (e.g. https://app.example), or *"
        )
    return raw


def host_name(raw: str) -> str:
    """A name for ``Host`` (no port needed), or ``*``."""
    if not raw or any(c in raw for c in "/@ \t,"):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a host name: use e.g. runcast.example.com, or *"
        )
    return raw


def size(text: str) -> str:
    """A byte count as its documented default: ``4 MiB``, ``512 KiB``, ``100 bytes``."""
    n = int(text)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def check(parser: argparse.ArgumentParser, rules: Mapping[str, Rule]) -> None:
    """Give each option named in ``rules`` (by ``dest``) its rule as argparse ``type``."""
    actions = _options(parser, rules)
    for dest, rule in rules.items():
        actions[dest].type = rule


def document(parser: argparse.ArgumentParser, defaults: Mapping[str, object]) -> None:
    """Append ``(default X)`` to the help of each option named in ``defaults`` that does not
    mention its default yet (options whose argparse default is None: the real one comes from the
    environment or the settings)."""
    actions = _options(parser, defaults)
    for dest, value in defaults.items():
        _append_default(actions[dest], str(value).replace("%", "%%"))


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default X)`` to every option with a real argparse default not shown yet."""
    for action in parser._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            continue
        _append_default(action, "off" if action.default is False else "%(default)s")


def states_default(text: str) -> bool:
    """Whether a help text already states a default: ``(default 30)``, ``auto (default): ...``,
    ``default: none`` (but not ``default scenario of runs``)."""
    return _STATED.search(text) is not None


_STATED = re.compile(r"\(default\b|\bdefault:")


def _append_default(action: argparse.Action, shown: str) -> None:
    text = action.help or ""
    if text == argparse.SUPPRESS or states_default(text):
        return
    action.help = f"{text} (default {shown})" if text else f"(default {shown})"


def _options(parser: argparse.ArgumentParser, names: Mapping[str, object]) -> dict[str, Any]:
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(set(names) - set(actions))
    if unknown:
        raise ValueError(f"no such options: {unknown}")
    return actions


def _convert(raw: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(raw)
    except ValueError:
        name = getattr(kind, "__name__", "value")
        raise argparse.ArgumentTypeError(f"invalid {name} value: {raw!r}") from None
