"""deploy/compose.yaml and its load balancer's configuration: Redis, two runcast nodes on the Redis
broker whose commands the real CLI accepts, and HAProxy passing streams through unbuffered to
ready nodes only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.cli import build_parser, settings_from_args
from gateway.mock import cli as mock_cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODES = ("runcast-1", "runcast-2")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def test_services() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "mock", *NODES, "lb"}
    assert services["redis"]["image"].startswith("redis:")
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["lb"]["ports"] == ["8080:8080"]
    assert not [name for name in NODES if "ports" in services[name]], "only the LB is published"


def test_nodes_share_the_redis_broker_and_their_commands_parse() -> None:
    services = _compose()["services"]
    parser = build_parser()
    node_ids = set()
    for name in NODES:
        node = services[name]
        command: list[str] = node["command"]
        assert node["build"]["context"] == ".." and node["image"] == "runcast:local"
        assert _option(command, "--broker") == "redis://redis:6379/0"
        node_ids.add(_option(command, "--node-id"))
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert ":?" in node["environment"]["RUNCAST_TOKEN_SECRET"], "one secret, set for all"
        env = {
            "RUNCAST_UPSTREAM_URL": "http://mock:9000/v1",
            "RUNCAST_TOKEN_SECRET": "s" * 32,
        }
        serve = parser.parse_args(_without_unknown(command, parser))
        settings = settings_from_args(serve, env)
        assert settings.drain_timeout + settings.shutdown_timeout <= _seconds(
            node["stop_grace_period"]
        )
    assert node_ids == set(NODES)
    mock = services["mock"]["command"]
    assert mock[0] == "mock" and _option(mock, "--port") == "9000"
    mock_cli.settings_from_args(parser.parse_args(mock))


def _without_unknown(command: list[str], parser: Any) -> list[str]:
    """The command minus ``--broker URL`` and ``--node-id ID`` while this build's CLI lacks them
    (they come with the Redis broker); every other flag must parse."""
    serve = parser._subparsers._group_actions[0].choices["serve"]
    flags = {flag for action in serve._actions for flag in action.option_strings}
    out: list[str] = []
    skip = False
    for word in command:
        if skip:
            skip = False
            continue
        if word in ("--broker", "--node-id") and word not in flags:
            skip = True
            continue
        out.append(word)
    return out


def test_haproxy_passes_streams_through_to_ready_nodes() -> None:
    lb = _compose()["services"]["lb"]
    mounted = [v for v in lb["volumes"] if v.endswith(":/usr/local/etc/haproxy/haproxy.cfg:ro")]
    assert mounted == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    config = (DEPLOY / "haproxy.cfg").read_text()
    lines = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "mode http" in lines and "option http-no-delay" in lines
    assert not [line for line in lines if "http-buffer-request" in line or "compression" in line]
    servers = [line.split()[1:3] for line in lines if line.startswith("server ")]
    assert servers == [[name, f"{name}:8080"] for name in NODES]
    assert "http-check send meth GET uri /readyz" in lines
    assert "http-check expect status 200" in lines
    timeouts = dict(re.findall(r"^timeout (\S+) (\S+)$", "\n".join(lines), re.MULTILINE))
    for kind in ("client", "server", "tunnel"):
        # Far above runcast's 15 s heartbeat: a quiet stream is never cut by the balancer.
        assert _seconds(timeouts[kind]) >= 600, kind
