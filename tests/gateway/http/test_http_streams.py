"""Subscriber endpoints' limits in open mode: what one client address can make the hub hold."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from http_helpers import WAIT, StartGateway, sse_subscribe

from gateway.http.streams import client_key

PENDING = {
    "max_pending_channels": 4,
    "max_pending_channels_per_client": 2,
    "pending_grace": 0.3,
    "sweep_interval": 0.05,
}


@pytest.mark.asyncio
async def test_one_address_cannot_lock_thread_subscriptions_out(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(hub=PENDING)
    # Loopback is a /8: a client bound to 127.0.0.2 is another address to the gateway.
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession(connector=other) as b:
        held = [
            await sse_subscribe(a, f"{gateway.url}/streams/threads/thread_a{n}") for n in (1, 2)
        ]
        async with a.get(f"{gateway.url}/streams/threads/thread_a3") as refused:
            assert refused.status == 429
            error = (await refused.json())["error"]
        assert error["code"] == "too_many_channels_per_client"
        assert error["type"] == "rate_limit_error"
        # Another address still subscribes to new threads.
        response, sub = await sse_subscribe(b, f"{gateway.url}/streams/threads/thread_b1")
        # The first address leaves; after the grace its channels are forgotten, freeing its share.
        for held_response, task in held:
            held_response.close()
            await asyncio.wait({task}, timeout=WAIT)
        async with asyncio.timeout(WAIT):
            while gateway.broker.statistics().pending_channels != 1:
                await asyncio.sleep(0.02)
        assert gateway.broker.channel_statistics("thread:thread_a1") is None
        again = [
            await sse_subscribe(a, f"{gateway.url}/streams/threads/thread_a{n}") for n in (3, 4)
        ]
        for r, task in [*again, (response, sub)]:
            r.close()
            task.cancel()
            await asyncio.wait({task})


def test_ipv6_clients_count_by_their_64() -> None:
    def key(remote: str) -> str | None:
        request = make_mocked_request("GET", "/", transport=_Peer(remote))
        return client_key(request)

    assert key("2001:db8:1:2:aaaa::1") == key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:10.0.0.1") == key("10.0.0.1") == "10.0.0.1"


class _Peer:
    def __init__(self, host: str) -> None:
        self._host = host

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self._host, 1234) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("segment", "code"),
    [("conversations", "unknown_conversation"), ("channels", "unknown_channel")],
)
async def test_a_waiting_subscriber_gives_no_snapshot_before_the_first_stream(
    start_gateway: StartGateway, segment: str, code: str
) -> None:
    # The channel exists while someone waits on it, but nothing has been streamed yet: its
    # snapshot is the documented 404, not a placeholder state.
    gateway = await start_gateway()
    url = f"{gateway.url}/streams/{segment}/waiting_1"
    async with aiohttp.ClientSession() as session:
        response, reader = await sse_subscribe(session, url)
        async with session.get(f"{url}/snapshot") as snapshot:
            assert snapshot.status == 404
            assert (await snapshot.json())["error"]["code"] == code
        response.close()
        reader.cancel()
        await asyncio.wait({reader})
