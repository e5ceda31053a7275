"""``runcast serve``: settings from flags and environment, and the real process on uvloop."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import re
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from http_helpers import WAIT, clean_environ, parse_serve, serve_process, stop_with_sigterm

from gateway.cli import build_parser, main
from gateway.cli.serve import warn_rootless_upstream
from gateway.errors import ConfigError
from gateway.flags import states_default
from gateway.http.listener import DEFAULT_BACKLOG, listen_backlog

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
        ((), {"RUNCAST_PORT": "70000"}, "port = '70000' (from env RUNCAST_PORT): must be a port"),
        ((), {"RUNCAST_BROKER": "postgres://x"}, "redis://HOST:PORT/DB"),
    ],
)
def test_invalid_settings_are_config_errors(
    argv: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_serve(*argv, env=env)


def test_broker_and_node_id() -> None:
    assert (parse_serve().broker, parse_serve().node_id) == ("memory", None)
    secret = ("--token-secret", "s" * 32)
    settings = parse_serve("--broker", "redis://127.0.0.1:6390/2", "--node-id", "n1", *secret)
    assert (settings.broker, settings.node_id) == ("redis://127.0.0.1:6390/2", "n1")
    env = {"RUNCAST_BROKER": "redis://r:6379/0"}
    assert parse_serve(*secret, env=env).broker == "redis://r:6379/0"


def test_main_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--token-secret", "short"]) == 2
    assert "32 bytes" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_serve_process_starts_embedded_simulator_and_stops_on_sigterm() -> None:
    async with serve_process(
        sys.executable, "-m", "gateway", "serve", "--port", "0", env=clean_environ()
    ) as (proc, url, lines):
        assert "embedded simulator (Assistants, Responses, Chat) at http://127.0.0.1:" in lines[0]
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


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--heartbeat", "-1"), "--heartbeat"),
        (("--retention", "0"), "--retention"),
        (("--history-events", "0"), "--history-events"),
        (("--cors-origin", "not an origin"), "--cors-origin"),
        (("--cors-origin", "https://app.example/path"), "--cors-origin"),
        (("--header-timeout", "0"), "--header-timeout"),
        (("--body-timeout", "-1"), "--body-timeout"),
        (("--upstream-idle-timeout", "0"), "--upstream-idle-timeout"),
        (("--upstream-answer-timeout", "-1"), "--upstream-answer-timeout"),
        (("--tool-timeout", "0"), "--tool-timeout"),
        (("--tool-timeout", "nan"), "--tool-timeout"),
        (("--tool-max-rounds", "0"), "--tool-max-rounds"),
        (("--max-connections", "-1"), "--max-connections"),
        (("--backlog", "-1"), "--backlog"),
        (("--coalesce-ms", "-1"), "--coalesce-ms"),
        (("--max-pending-per-client", "0"), "--max-pending-per-client"),
        (("--port", "70000"), "--port"),
        (("--subscriber-buffer-bytes", "lots"), "--subscriber-buffer-bytes"),
        (("--max-stream-bytes", "-1"), "--max-stream-bytes"),
    ],
)
def test_bad_flag_values_are_refused_naming_the_flag(
    argv: tuple[str, ...], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and "Traceback" not in err


def test_origins_from_the_environment_are_checked_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_serve("--cors-origin", "https://app.example:8443").cors_origins == (
        "https://app.example:8443",
    )
    with pytest.raises(ConfigError, match="RUNCAST_CORS_ORIGINS"):
        parse_serve(env={"RUNCAST_CORS_ORIGINS": "https://a.example,app.example"})


def test_new_limits_reach_the_settings() -> None:
    settings = parse_serve(
        "--header-timeout",
        "5",
        "--body-timeout",
        "7.5",
        "--max-connections",
        "100",
        "--max-pending-per-client",
        "3",
    )
    assert (settings.header_timeout, settings.body_timeout) == (5, 7.5)
    assert settings.max_connections == 100
    assert settings.hub.max_pending_channels_per_client == 3


def test_the_stream_cap_reaches_the_upstream_settings() -> None:
    upstream = ("--upstream", "http://127.0.0.1:9/v1")
    default = parse_serve(*upstream).upstream
    assert default is not None and default.max_stream_bytes == 64 << 20
    capped = parse_serve(*upstream, "--max-stream-bytes", "1MiB").upstream
    assert capped is not None and capped.max_stream_bytes == 1 << 20
    off = parse_serve(*upstream, env={"RUNCAST_UPSTREAM_MAX_STREAM_BYTES": "0"}).upstream
    assert off is not None and off.max_stream_bytes == 0


def test_the_backlog_comes_from_the_flag_then_the_environment() -> None:
    assert parse_serve().backlog == 0
    assert parse_serve(env={"RUNCAST_BACKLOG": "2048"}).backlog == 2048
    assert parse_serve("--backlog", "512", env={"RUNCAST_BACKLOG": "2048"}).backlog == 512
    with pytest.raises(ConfigError, match="RUNCAST_BACKLOG"):
        parse_serve(env={"RUNCAST_BACKLOG": "many"})
    with pytest.raises(ConfigError, match="backlog"):
        parse_serve(env={"RUNCAST_BACKLOG": "-5"})


def test_the_coalescing_window_is_given_in_milliseconds() -> None:
    assert parse_serve().hub.coalesce_ms == 0
    assert parse_serve("--coalesce-ms", "2.5").hub.coalesce_ms == 2.5


def test_the_default_backlog_is_somaxconn(tmp_path: Path) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("8192\n")
    assert listen_backlog(0, somaxconn_path=str(somaxconn)) == 8192
    assert listen_backlog(300, somaxconn_path=str(somaxconn)) == 300
    somaxconn.write_text("garbage")
    assert listen_backlog(0, somaxconn_path=str(somaxconn)) == DEFAULT_BACKLOG
    assert listen_backlog(0, somaxconn_path=str(tmp_path / "absent")) == DEFAULT_BACKLOG


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"runcast {importlib.metadata.version('runcast')}"


def test_top_level_help_names_every_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    # The gateway relays and the simulator serves Assistants runs, Responses and Chat streams;
    # the command list must not describe runcast as an Assistants-only tool.
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    description, commands = text.split("positional arguments:")
    mock = commands.split(" mock ", 1)[1].split(" loadtest ", 1)[0]
    for protocol in ("Assistants", "Responses", "Chat"):
        assert protocol in description, description
        assert protocol in mock, mock


def _help_entries(help_text: str) -> dict[str, str]:
    """Each option's help entry in ``--help`` output, keyed by its first option string."""
    entries: dict[str, str] = {}
    current: str | None = None
    for line in help_text.splitlines():
        if re.match(r"  -", line):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {name: " ".join(text.split()) for name, text in entries.items()}


@pytest.mark.parametrize("command", ["serve", "mock", "loadtest"])
def test_every_option_with_a_default_shows_it_in_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    entries = _help_entries(capsys.readouterr().out)
    sub = next(
        action.choices[command]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    checked = 0
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        # Every serve option has a default (from the settings when argparse's is None), and
        # every loadtest option says what happens without it (--target, --api-key, --json ...).
        if command in ("serve", "loadtest") or action.default is not None:
            entry = entries[action.option_strings[0]]
            assert states_default(entry), entry
            checked += 1
    assert checked >= 8


def _free_port_held() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["port in use", "unknown host"])
async def test_serve_cannot_listen_says_so_in_one_line(where: str) -> None:
    with _free_port_held() as taken:
        port = taken.getsockname()[1]
        argv = ["--port", str(port)] if where == "port in use" else ["--host", "nohost.invalid"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            *argv,
            env=clean_environ(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(WAIT):
            _, err = await proc.communicate()
    lines = err.decode().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("runcast: error: cannot listen on ")
    expected = (
        f"127.0.0.1:{port}: Address already in use"
        if where == "port in use"
        else "nohost.invalid:8080"
    )
    assert expected in lines[0]


@pytest.mark.parametrize(
    ("upstream", "warned"),
    [
        ("http://127.0.0.1:9", True),
        ("http://user-host.internal:8000/", True),
        ("http://127.0.0.1:9/v1", False),
        ("https://example.openai.azure.com/openai", False),
    ],
)
def test_an_upstream_without_a_path_is_warned_about_at_start(
    upstream: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Accepted, but every call would be a 404 from an OpenAI-compatible server (its API is
    # under /v1), and nothing at start said why.
    settings = parse_serve("--upstream", upstream, "--subscribe-auth", "open")
    with caplog.at_level("WARNING", logger="runcast"):
        warn_rootless_upstream(settings)
    lines = [r.getMessage() for r in caplog.records]
    if warned:
        base = upstream.rstrip("/")
        assert lines == [
            f"--upstream {base} has no path: calls go to {base}/chat/completions and the like;"
            f" OpenAI-compatible servers serve them under /v1 (--upstream {base}/v1)"
        ]
    else:
        assert lines == []


def test_a_rootless_upstream_with_a_query_is_warned_about_with_the_query_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = parse_serve(
        "--upstream", "http://127.0.0.1:9/?code=SECRET", "--subscribe-auth", "open"
    )
    with caplog.at_level("WARNING", logger="runcast"):
        warn_rootless_upstream(settings)
    assert [r.getMessage() for r in caplog.records] == [
        "--upstream http://127.0.0.1:9/?code=*** has no path: calls go to"
        " http://127.0.0.1:9/chat/completions and the like; OpenAI-compatible servers serve them"
        " under /v1 (--upstream http://127.0.0.1:9/v1?code=***)"
    ]


@pytest.mark.asyncio
async def test_a_broker_refusing_the_password_is_one_line() -> None:
    # Redis answering AUTH with WRONGPASS ended runcast in a 79-line traceback.
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                writer.write(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--port",
            "0",
            "--broker",
            f"redis://:REDIS-PW@127.0.0.1:{port}/0",
            "--token-secret",
            SECRET,
            env=clean_environ(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(WAIT):
            _, err = await proc.communicate()
    finally:
        server.close()
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "REDIS-PW" not in text
    assert text.splitlines()[-1].startswith(
        f"runcast: error: the broker redis://***@127.0.0.1:{port}/0 refused the credentials: "
    )
