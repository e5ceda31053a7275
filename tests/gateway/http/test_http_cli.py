"""``runcast serve``: settings from flags and environment, and the real process on uvloop."""

from __future__ import annotations

import re
import sys

import aiohttp
import pytest
from http_helpers import clean_environ, parse_serve, serve_process, stop_with_sigterm

from gateway.cli import main
from gateway.errors import ConfigError

SECRET = "x" * 32


def test_defaults_use_the_embedded_simulator_in_open_mode() -> None:
    settings = parse_serve()
    assert settings.embedded and settings.open_subscribe
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.upstream_key_held is False


def test_environment_and_flags() -> None:
    env = {
        "RUNCAST_UPSTREAM_URL": "https://api.example/v1",
        "MY_KEY": "sk-upstream",
        "RUNCAST_API_KEYS": "rk-1, rk-2",
        "RUNCAST_TOKEN_SECRET": SECRET,
        "RUNCAST_CORS_ORIGINS": "https://a.example,https://b.example",
        "RUNCAST_PORT": "9000",
    }
    settings = parse_serve(
        "--upstream-key-env", "MY_KEY", "--retention", "60", "--expiry-grace", "0.5", env=env
    )
    assert settings.upstream is not None
    assert settings.upstream.base_url == "https://api.example/v1"
    assert settings.upstream.api_key == "sk-upstream"
    assert settings.api_keys == ("rk-1", "rk-2")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.port == 9000 and settings.hub.retention == 60
    assert settings.expiry_grace == 0.5
    assert not settings.open_subscribe  # a real upstream needs tokens
    # Flags win over the environment; keys and secrets never show in the repr.
    flagged = parse_serve("--port", "9001", "--api-key", "rk-3", env=env)
    assert flagged.port == 9001 and flagged.api_keys == ("rk-3",)
    assert "sk-upstream" not in repr(flagged) and "rk-3" not in repr(flagged)
    assert SECRET not in repr(flagged)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ((), {"RUNCAST_UPSTREAM_URL": "https://x/v1", "OPENAI_API_KEY": "sk"}, "runcast keys"),
        (("--token-secret", "short"), {}, "32 bytes"),
        (("--upstream", "ftp://x"), {}, "http(s)"),
        ((), {"RUNCAST_PORT": "eighty"}, "RUNCAST_PORT"),
        (("--port", "70000"), {}, "ports"),
    ],
)
def test_invalid_settings_are_config_errors(
    argv: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_serve(*argv, env=env)


def test_main_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--token-secret", "short"]) == 2
    assert "32 bytes" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_serve_process_starts_embedded_simulator_and_stops_on_sigterm() -> None:
    async with serve_process(
        sys.executable, "-m", "gateway", "serve", "--port", "0", env=clean_environ()
    ) as (proc, url, lines):
        assert "embedded Assistants API simulator at http://127.0.0.1:" in lines[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz") as response:
                assert await response.json() == {"status": "ok"}
            async with session.post(
                f"{url}/v1/threads",
                json={},
                headers={"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"},
            ) as response:
                assert response.status == 200
                assert (await response.json())["object"] == "thread"
        assert await stop_with_sigterm(proc) == 0
