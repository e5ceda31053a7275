"""The parsers package is pure: importing it pulls in no event loop, HTTP or Redis library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = {"asyncio", "aiohttp", "redis"}


def run_import_check(extra: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "import parsers, parsers.sse, parsers.assistants, parsers.accumulate\n"
        "import parsers.responses, parsers.chat\n"
        f"{extra}\n"
        f"loaded = sorted({FORBIDDEN!r} & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_parsers_loads_no_io_library() -> None:
    result = run_import_check()
    assert result.returncode == 0, result.stderr


def test_the_check_notices_a_forbidden_import() -> None:
    result = run_import_check("import asyncio")
    assert result.returncode != 0
    assert "asyncio" in result.stderr
