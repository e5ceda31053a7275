"""``runcast serve`` tool automation flags: settings, module loading, the real console script."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import aiohttp
import pytest
from http_helpers import clean_environ, parse_serve, serve_process, stop_with_sigterm

from gateway.cli import check_tools, main
from gateway.errors import ConfigError
from gateway.http.app import TOOL_AUTOMATION, create_app
from gateway.tools import ToolSettings

HERE = Path(__file__).parent


def test_tool_flags_and_environment_build_tool_settings() -> None:
    settings = parse_serve(
        "--tools",
        "runcast_e2e_tools",
        "--tools",
        "other.tools",
        "--tool-webhook",
        "crm=https://crm.example/hook",
        "--tool-webhook",
        "*=http://127.0.0.1:9000/tools",
        "--tool-policy",
        "error",
        "--tool-timeout",
        "7.5",
        "--tool-concurrency",
        "4",
        "--tool-max-rounds",
        "3",
        "--tool-on-error",
        "cancel",
        "--tool-expiry-margin",
        "2",
        "--show-requires-action",
        "--tool-events-to-creator",
        env={"RUNCAST_TOOL_WEBHOOK_SECRET": "whsec-from-env"},
    )
    assert settings.tools == ToolSettings(
        modules=("runcast_e2e_tools", "other.tools"),
        webhooks={"crm": "https://crm.example/hook", "*": "http://127.0.0.1:9000/tools"},
        webhook_secret="whsec-from-env",
        policy="error",
        timeout=7.5,
        concurrency=4,
        max_rounds=3,
        on_error="cancel",
        expiry_margin=2.0,
        show_requires_action=True,
        emit_tool_events_to_creator=True,
    )
    assert "whsec-from-env" not in repr(settings)
    flagged = parse_serve("--tool-webhook-secret", "s2", env={"RUNCAST_TOOL_WEBHOOK_SECRET": "s1"})
    assert flagged.tools.webhook_secret == "s2"
    assert parse_serve().tools == ToolSettings()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--tool-webhook", "crm=https://crm.example/hook"), "signing secret"),
        (("--tool-webhook", "no-equals-sign"), "NAME=URL"),
    ],
)
def test_invalid_tool_flags_are_config_errors(argv: tuple[str, ...], message: str) -> None:
    # Out-of-range numbers are refused earlier, by the parser (test_http_cli.py).
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_serve(*argv)


def test_serve_tools_module_registers_its_handlers() -> None:
    settings = parse_serve("--tools", "runcast_e2e_tools", "--token-secret", "x" * 32)
    check_tools(settings.tools)
    app = create_app(settings)
    assert app[TOOL_AUTOMATION].registry.names() == ["get_weather", "lookup_customer"]
    assert TOOL_AUTOMATION not in create_app(parse_serve())  # nothing to answer with: no automation


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("no_such_tools_module", "cannot import tools module 'no_such_tools_module'"),
        ("json", "tools module 'json' defines no @tool function"),
        ("runcast_broken_tools", "failed to import: ZeroDivisionError"),
    ],
)
def test_main_exits_2_on_a_bad_tools_module(
    module: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "runcast_broken_tools.py").write_text("ratio = 1 / 0\n")
    monkeypatch.chdir(tmp_path)  # found there: the current directory is searched first
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "runcast_broken_tools", raising=False)
    assert main(["serve", "--tools", module]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runcast: error: ") and message in err


@pytest.mark.asyncio
async def test_console_script_serves_with_tools_from_the_current_directory() -> None:
    script = Path(sys.executable).parent / "runcast"
    assert script.exists()
    env = clean_environ()
    env.pop("PYTHONPATH", None)
    async with serve_process(
        str(script), "serve", "--port", "0", "--tools", "runcast_e2e_tools", cwd=HERE, env=env
    ) as (proc, url, lines):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
            assert await response.json() == {"status": "ok"}
        # /healthz shows nothing without credentials: the startup log names the tools loaded.
        assert any("python tools ['get_weather', 'lookup_customer']" in line for line in lines)
        assert await stop_with_sigterm(proc) == 0
