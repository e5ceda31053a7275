"""``runcast mock`` flags and the foreground server."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Sequence

import aiohttp
import pytest
from mock_helpers import HEADERS

from gateway.errors import ConfigError
from gateway.mock.cli import add_arguments, settings_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_map_to_settings() -> None:
    ns = parse(
        "--scenario", "tool_call", "--deltas", "500", "--tokens-per-delta", "4", "--delay-ms", "2.5",
        "--seed", "9", "--expires-in", "30", "--max-threads", "50", "--ttl", "60", "--port", "0",
    )  # fmt: skip
    settings = settings_from_args(ns)
    assert (settings.scenario, settings.deltas, settings.tokens_per_delta) == ("tool_call", 500, 4)
    assert (settings.delay_ms, settings.seed, settings.expires_in) == (2.5, 9, 30.0)
    assert (settings.max_threads, settings.ttl_s) == (50, 60.0)
    assert (ns.host, ns.port) == ("127.0.0.1", 0)
    assert settings_from_args(parse()) == type(settings)()


def test_invalid_values_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        settings_from_args(parse("--deltas", "0"))


@pytest.mark.asyncio
async def test_module_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.mock.cli", "--port", "0", "--deltas", "2",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("runcast mock listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1].strip()
        async with (
            aiohttp.ClientSession(headers=HEADERS) as session,
            session.post(base + "/threads", json={}) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["object"] == "thread"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_wire_flags_map_to_settings() -> None:
    ns = parse(
        "--keepalive-every", "3", "--data-only", "--responses-done", "--chat-no-index",
        "--stream-window", "60", "--max-responses", "10", "--max-conversations", "5",
    )  # fmt: skip
    settings = settings_from_args(ns)
    assert (settings.keepalive_every, settings.data_only) == (3, True)
    assert (settings.responses_done, settings.chat_no_index) == (True, True)
    assert (settings.stream_window_s, settings.max_responses, settings.max_conversations) == (
        60.0,
        10,
        5,
    )
    defaults = settings_from_args(parse())
    assert not (defaults.data_only or defaults.responses_done or defaults.chat_no_index)
    with pytest.raises(ConfigError):
        settings_from_args(parse("--keepalive-every", "-1"))


def test_help_documents_the_protocols_and_the_switches(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="runcast mock")
    add_arguments(parser)
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "Assistants, Responses and Chat Completions" in text
    for word in ("mock_keepalive_every", "mock_data_only", "mock_done", "mock_no_index",
                 "mock_drop_after", "X-Mock-Scenario", "--chat-no-index"):  # fmt: skip
        assert word in text


async def run_to_exit(*argv: str, entry: Sequence[str] = ("gateway", "mock")) -> tuple[int, str]:
    """Run ``python -m <entry> *argv``, expected to exit at once: its status and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *entry, *argv,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # still serving: the address was not refused
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize("port", ["70000", "-1"])
@pytest.mark.asyncio
async def test_a_port_out_of_range_is_refused_naming_the_flag(port: str) -> None:
    # 70000 was served on 4464 (70000 - 65536); -1 was a traceback.
    status, err = await run_to_exit("--port", port)
    assert status == 2 and "Traceback" not in err
    assert f"runcast mock: error: argument --port: must be a port in 0..65535, got {port}" in err


@pytest.mark.parametrize("entry", [("gateway", "mock"), ("gateway.mock.cli",)])
@pytest.mark.parametrize("where", ["port in use", "unknown host"])
@pytest.mark.asyncio
async def test_an_address_that_cannot_be_listened_on_is_one_line(
    where: str, entry: tuple[str, ...]
) -> None:
    # Each was a 22-line traceback from the event loop.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--port", str(port)] if where == "port in use" else ["--host", "nohost.invalid"]
        status, err = await run_to_exit(*argv, entry=entry)
    lines = err.splitlines()
    assert status == 1 and len(lines) == 1, lines
    expected = (
        f"runcast mock: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        if where == "port in use"
        else "runcast mock: error: cannot listen on nohost.invalid:8001: "
    )
    assert lines[0].startswith(expected), lines
