"""``runcast serve`` tool automation flags: settings, module loading, the real console script."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from http_helpers import WAIT, clean_environ, parse_serve, serve_process, stop_with_sigterm
from openai import AsyncOpenAI

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
        env={"RUNCAST_TOOL_WEBHOOK_SECRET": "whsec-from-the-env"},
    )
    assert settings.tools == ToolSettings(
        modules=("runcast_e2e_tools", "other.tools"),
        webhooks={"crm": "https://crm.example/hook", "*": "http://127.0.0.1:9000/tools"},
        webhook_secret="whsec-from-the-env",
        policy="error",
        timeout=7.5,
        concurrency=4,
        max_rounds=3,
        on_error="cancel",
        expiry_margin=2.0,
        show_requires_action=True,
        emit_tool_events_to_creator=True,
    )
    assert "whsec-from-the-env" not in repr(settings)
    flagged = parse_serve(
        "--tool-webhook-secret", "s2" * 8, env={"RUNCAST_TOOL_WEBHOOK_SECRET": "s1" * 8}
    )
    assert flagged.tools.webhook_secret == "s2" * 8
    assert parse_serve().tools == ToolSettings()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--tool-webhook", "crm=https://crm.example/hook"), "signing secret"),
        (("--tool-webhook", "no-equals-sign"), "NAME=URL"),
        (("--tool-webhook-secret", "s" * 15), "secret must be at least 16 bytes"),
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


STUCK_TOOLS = """
import asyncio, time
from gateway.tools import tool

@tool
def get_weather() -> str:  # sync code that never returns in time
    time.sleep(60)
    return "late"

@tool(name="lookup_customer")
async def lookup() -> str:  # ignores cancellation
    for _ in range(600):
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass
    return "late"
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("stuck", ["get_weather", "lookup_customer"])
async def test_a_stuck_tool_handler_does_not_hold_the_exit(stuck: str, tmp_path: Path) -> None:
    (tmp_path / "stuck_tools.py").write_text(STUCK_TOOLS)
    flags = ("--tools", "stuck_tools", "--tool-timeout", "1", "--drain-timeout", "0.5")
    command = (sys.executable, "-m", "gateway", "serve", "--port", "0", *flags)
    env = {**clean_environ(), "PYTHONPATH": str(tmp_path), "RUNCAST_SHUTDOWN_TIMEOUT": "1"}
    async with serve_process(*command, env=env) as (proc, url, lines):
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-any", max_retries=0)
        tools: list[Any] = [
            {"type": "function", "function": {"name": stuck, "parameters": {"type": "object"}}}
        ]
        stream = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            tools=tools,
            metadata={"mock_scenario": "tool_call"},
            stream=True,
        )
        async with asyncio.timeout(WAIT):
            async for chunk in stream:  # the call is made; its handler is running
                if chunk.choices and chunk.choices[0].finish_reason == "tool_calls":
                    break
            await asyncio.sleep(0.5)
            started = asyncio.get_running_loop().time()
            assert await stop_with_sigterm(proc) == 0
        took = asyncio.get_running_loop().time() - started
        await sdk.close()
    # The drain (0.5 s), the relays' bound (1 s), the leftovers' (2 s); the handler takes 60 s.
    assert took < 15
    assert proc.stderr is not None
    log_text = "".join(lines) + (await proc.stderr.read()).decode()
    assert "exiting without them" in log_text
