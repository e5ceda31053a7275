"""The ``runcast`` command: ``runcast serve`` (the gateway), ``runcast config`` (its effective
settings), ``runcast mock`` (the simulator) and ``runcast loadtest``.

Modules, one job each: ``entry`` (the parser and :func:`main`), ``serve`` (settings, the tools
check, the server loop), ``serve_flags`` (the options of ``serve`` and ``config``),
``serve_rules`` (what their values may be, the defaults ``--help`` names), ``show_config``
(``runcast config``) and ``handoff`` (``mock`` and ``loadtest``, whose flags live in their own
packages).
"""

from .entry import build_parser, main
from .serve import check_tools, settings_from_args
from .serve_rules import RULES as _SERVE_RULES  # noqa: F401  (tests/gateway/test_config.py)

__all__ = ["build_parser", "check_tools", "main", "settings_from_args"]
