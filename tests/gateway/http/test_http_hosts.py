"""Which ``Host`` runcast answers for (``gateway.http.hosts``): bound to loopback, a page whose
name was rebound to 127.0.0.1 (DNS rebinding) gets a 403 instead of every stream and the
upstream key's runs; bound elsewhere, or told ``--allowed-host``, the names given pass."""

from __future__ import annotations

import argparse

import aiohttp
import orjson
import pytest
from http_helpers import StartGateway, parse_serve

from gateway.http.hosts import HostCheck

ATTACKER = "rebound.attacker.example"
LOOPBACK = ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:9", "[::1]:8080", "127.8.9.1"]
PATHS = [
    ("GET", "/healthz"),
    ("GET", "/viewer/api/channels"),
    ("GET", "/streams/channels/anything"),
    ("POST", "/v1/responses"),
]


async def _status(session: aiohttp.ClientSession, url: str, method: str, host: str) -> int:
    body = orjson.dumps({"model": "gpt-4o", "input": "hi", "stream": True})
    async with session.request(method, url, headers={"Host": host}, data=body) as response:
        if response.status == 403:
            assert (await response.json())["error"]["code"] == "host_not_allowed"
        return response.status


@pytest.mark.asyncio
async def test_bound_to_loopback_only_loopback_hosts_are_answered(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()  # host 127.0.0.1, open mode: what rebinding would read
    for method, path in PATHS:
        assert await _status(session, gateway.url + path, method, ATTACKER) == 403, path
    for host in LOOPBACK:
        assert await _status(session, gateway.url + "/healthz", "GET", host) == 200, host


@pytest.mark.asyncio
async def test_allowed_hosts_are_answered_besides_loopback_ones(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(allowed_hosts=("Runcast.Example.com",))
    for host in ("runcast.example.com", "runcast.example.com:443", "localhost"):
        assert await _status(session, gateway.url + "/healthz", "GET", host) == 200, host
    assert await _status(session, gateway.url + "/healthz", "GET", ATTACKER) == 403


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "options", [{"allowed_hosts": ("*",)}, {"host": "0.0.0.0"}], ids=["star", "bound to all"]
)
async def test_any_host_is_answered_with_a_star_or_bound_elsewhere(
    start_gateway: StartGateway, session: aiohttp.ClientSession, options: dict[str, object]
) -> None:
    gateway = await start_gateway(**options)
    assert await _status(session, gateway.url + "/healthz", "GET", ATTACKER) == 200


def test_allowed_hosts_from_flags_and_environment() -> None:
    assert parse_serve(
        "--allowed-host", "a.example", "--allowed-host", "b.example"
    ).allowed_hosts == (
        "a.example",
        "b.example",
    )
    assert parse_serve(env={"RUNCAST_ALLOWED_HOSTS": "a.example,*"}).allowed_hosts == (
        "a.example",
        "*",
    )
    with pytest.raises((argparse.ArgumentTypeError, SystemExit, ValueError)):
        parse_serve("--allowed-host", "https://a.example/")


def test_answers_stay_right_past_the_memo_of_hosts_seen() -> None:
    # A client naming a new Host each time cannot grow the memo nor mix up its answers.
    check = HostCheck("127.0.0.1", ["proxy.example"])
    for round_ in range(3):
        for i in range(300):
            assert check.allows(f"127.0.0.{i % 250 + 1}:{round_}")
            assert not check.allows(f"h{i}.{ATTACKER}")
            assert check.allows("proxy.example:443")
        assert len(check._memo) <= 64
