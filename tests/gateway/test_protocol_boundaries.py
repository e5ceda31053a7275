"""Nothing outside a protocol's own modules names that protocol's parser types (issue 11).

Every ``.py`` under ``gateway/`` is read with ``ast``; each ``import parsers.<x>`` or
``from parsers.<x> import ...`` (``if TYPE_CHECKING:`` blocks included) must come from a module
the importing protocol owns. ``parsers.sse``, ``parsers.errors``, ``parsers.signals`` and
``parsers._sse_*`` are neutral and may be imported anywhere.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"

# One line per protocol: (the parser modules it owns, the gateway modules that may import them).
# ``gateway/mock/`` is the simulator, which fakes every protocol.
# fmt: off
PROTOCOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "assistants": (("parsers.assistants*", "parsers.accumulate", "parsers._accumulate_*"), ("gateway/runs/assistants/*", "gateway/upstream/assistants/*", "gateway/mock/*", "gateway/loadtest/protocols/assistants.py")),
    "responses": (("parsers.responses*",), ("gateway/runs/protocols/responses*.py", "gateway/runs/protocols/named.py", "gateway/mock/*", "gateway/loadtest/protocols/responses.py")),
    "chat": (("parsers.chat*",), ("gateway/runs/protocols/chat*.py", "gateway/runs/protocols/named.py", "gateway/mock/*", "gateway/loadtest/protocols/chat.py")),
}
# fmt: on
NEUTRAL = ("parsers", "parsers.sse", "parsers.errors", "parsers.signals", "parsers._sse_*")


def parser_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``parsers`` module a source imports, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            # ``from parsers import assistants`` names the submodule through its alias.
            names = [node.module]
            if node.module == "parsers":
                names += [f"parsers.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "parsers"]
    return found


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def violations(path: str, source: str) -> list[str]:
    """``path:line module`` for each import of a protocol's parsers outside its own modules."""
    out: list[str] = []
    for line, module in parser_imports(source):
        if _matches(module, NEUTRAL):
            continue
        owners = [name for name, (mods, _) in PROTOCOLS.items() if _matches(module, mods)]
        if not owners:
            out.append(f"{path}:{line} {module} (a parser module no protocol owns)")
        elif not any(_matches(path, PROTOCOLS[name][1]) for name in owners):
            out.append(f"{path}:{line} {module} (outside the {owners[0]} protocol's modules)")
    return out


def _gateway_files() -> list[Path]:
    return sorted(GATEWAY.rglob("*.py"))


def test_gateway_modules_import_only_their_own_protocols_parsers() -> None:
    found: list[str] = []
    for file in _gateway_files():
        found += violations(file.relative_to(ROOT).as_posix(), file.read_text())
    assert found == []


def test_http_names_no_protocols_parser_types() -> None:
    http = [file for file in _gateway_files() if file.parent.name == "http"]
    assert http
    for file in http:
        for _, module in parser_imports(file.read_text()):
            assert _matches(module, NEUTRAL), f"{file.name} imports {module}"


@pytest.mark.parametrize(
    ("path", "source", "bad"),
    [
        ("gateway/runs/relay.py", "from parsers.assistants import Run\n", True),
        ("gateway/runs/relay.py", "import parsers.accumulate\n", True),
        ("gateway/upstream/stream.py", "from parsers.assistants.signals import signal\n", True),
        (
            "gateway/tools/automation.py",
            "if TYPE_CHECKING:\n    from parsers.chat import X\n",
            True,
        ),
        ("gateway/runs/expiry.py", "def f():\n    from parsers import responses\n", True),
        ("gateway/runs/protocols/chat.py", "from parsers.responses import DoneEvent\n", True),
        ("gateway/runs/relay.py", "from parsers.brandnew import Thing\n", True),
        ("gateway/runs/assistants/protocol.py", "from parsers.assistants import Run\n", False),
        ("gateway/runs/protocols/named.py", "from parsers.chat import ChatDoneEvent\n", False),
        ("gateway/http/creator.py", "from parsers.sse import encode_sse\n", False),
        ("gateway/runs/relay.py", "from parsers.signals import RunSeen\n", False),
    ],
)
def test_the_checker_catches_a_violation(path: str, source: str, bad: bool) -> None:
    assert bool(violations(path, source)) is bad
