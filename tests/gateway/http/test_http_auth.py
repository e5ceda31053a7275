"""Subscribe tokens, runcast keys, and the JSON errors for bad input."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest
from http_helpers import SECRET, Gateway, StartGateway, Subscriber, new_thread, read_sse, sdk_client

from gateway.http.auth import CallerAuth, TokenAuthority

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

RUNCAST_KEY = "rk-backend"
HEADERS = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}
ERROR_KEYS = {"message", "type", "param", "code"}


async def error_of(response: aiohttp.ClientResponse) -> dict[str, object]:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    return body["error"]  # type: ignore[no-any-return]


async def finished_run(gateway: Gateway, session: aiohttp.ClientSession) -> dict[str, str]:
    """Run one streamed run to the end; returns the creator's runcast-* response headers."""
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    async with session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers=HEADERS,
    ) as response:
        await read_sse(response, Subscriber())
        return {k: v for k, v in response.headers.items() if k.startswith("runcast-")}


def token(sub: str, *, exp: float | None = None, secret: str = SECRET) -> str:
    claims = {"sub": sub, "iss": "runcast", "exp": int(exp if exp else time.time() + 60)}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.asyncio
async def test_subscribe_tokens(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token", api_keys=(RUNCAST_KEY,))
    head = await finished_run(gateway, session)
    run_id, thread_id = head["runcast-run-id"], head["runcast-thread-id"]
    run_url = f"{gateway.url}/streams/runs/{run_id}"

    async def status(url: str, **headers: str) -> tuple[int, object]:
        async with session.get(url, headers=headers) as response:
            if response.status == 200:
                return 200, await read_sse(response, Subscriber())
            return response.status, (await error_of(response))["code"]

    assert await status(run_url) == (401, "missing_token")
    assert await status(f"{run_url}?token=garbage") == (401, "invalid_token")
    bad_sig = token(f"run:{run_id}", secret="another-secret-that-is-32-bytes-long")
    assert await status(f"{run_url}?token={bad_sig}") == (401, "invalid_token")
    expired = token(f"run:{run_id}", exp=time.time() - 120)
    assert await status(f"{run_url}?token={expired}") == (401, "token_expired")
    other = token("run:run_other")
    assert await status(f"{run_url}?token={other}") == (403, "token_scope")
    assert await status(f"{run_url}/snapshot?token={other}") == (403, "token_scope")

    # The creator's tokens, a thread token (for its runs), a runcast key, and a bearer token.
    for url, headers in (
        (f"{run_url}?since=0&token={head['runcast-subscribe-token']}", {}),
        (f"{run_url}?since=0&token={head['runcast-thread-token']}", {}),
        (f"{run_url}?since=0", {"Authorization": f"Bearer {RUNCAST_KEY}"}),
        (f"{run_url}?since=0", {"Authorization": f"Bearer {head['runcast-subscribe-token']}"}),
        (
            f"{gateway.url}/streams/threads/{thread_id}?since=0",
            {"Authorization": f"Bearer {head['runcast-thread-token']}"},
        ),
    ):
        code, sub = await status(url, **headers)
        assert code == 200
        assert isinstance(sub, Subscriber) and sub.names[-1] == "done"
    thread_token_elsewhere = token(f"thread:{thread_id}")
    assert await status(
        f"{gateway.url}/streams/threads/thread_else?token={thread_token_elsewhere}"
    ) == (403, "token_scope")
    async with session.get(f"{run_url}/snapshot?token={head['runcast-subscribe-token']}") as snap:
        assert snap.status == 200


@pytest.mark.asyncio
async def test_post_tokens_mints_for_backends(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(subscribe_auth="token", api_keys=(RUNCAST_KEY,))
    head = await finished_run(gateway, session)
    url = f"{gateway.url}/tokens"
    key = {"Authorization": f"Bearer {RUNCAST_KEY}"}

    async with session.post(url, json={"run_id": "run_x"}) as response:
        assert response.status == 401
    async with session.post(
        url, json={"run_id": "run_x"}, headers={"Authorization": "Bearer sk-caller"}
    ) as response:
        assert response.status == 401
    for body, param in (
        (b"{not json", None),
        (b'{"run_id": "run_x", "extra": 1}', None),
        (b'{"run_id": "run_x", "thread_id": "thread_y"}', "channel"),
        (b'{"channel": "user:42"}', "channel"),
        (b'{"channel": "channel:foo\\n"}', "channel"),  # no route can serve it
        (b'{"channel": "channel:.."}', "channel"),  # a dot-segment, no stream's channel
        (b'{"run_id": "run_x\\n"}', "channel"),
        (b'{"run_id": "run_x", "ttl": 999999}', "ttl"),
    ):
        async with session.post(url, data=body, headers=key) as response:
            assert response.status == 400, body
            assert (await error_of(response))["param"] == param

    async with session.post(
        url, json={"run_id": head["runcast-run-id"], "ttl": 30}, headers=key
    ) as response:
        assert response.status == 200
        minted = await response.json()
    assert minted["channel"] == f"run:{head['runcast-run-id']}"
    assert minted["expires_at"] <= time.time() + 31
    async with session.get(
        f"{gateway.url}/streams/runs/{head['runcast-run-id']}?since=0&token={minted['token']}"
    ) as response:
        assert response.status == 200
        assert (await read_sse(response, Subscriber())).names[-1] == "done"


@pytest.mark.asyncio
async def test_bad_input_gets_json_errors(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        max_body_bytes=1024, api_keys=(RUNCAST_KEY,), hub={"max_subscribers_per_channel": 1}
    )
    async with session.get(f"{gateway.url}/streams/runs/run_unknown") as response:
        assert response.status == 404
        assert (await error_of(response))["code"] == "unknown_run"
    async with session.get(f"{gateway.url}/streams/runs/run_unknown/snapshot") as response:
        assert response.status == 404
    async with session.get(f"{gateway.url}/nowhere") as response:
        assert response.status == 404
        assert (await error_of(response))["type"] == "not_found_error"
    async with session.get(f"{gateway.url}/streams/runs/bad%20id") as response:
        assert response.status == 404
    async with session.delete(f"{gateway.url}/tokens") as response:
        assert response.status == 405
        await error_of(response)
    async with session.post(f"{gateway.v1}/threads", data=b"x" * 4096, headers=HEADERS) as response:
        assert response.status == 413
        assert (await error_of(response))["code"] == "body_too_large"
    async with session.get(
        f"{gateway.url}/streams/threads/thread_a", headers={"Last-Event-ID": "abc"}
    ) as response:
        assert response.status == 400
    async with session.get(f"{gateway.url}/streams/threads/thread_a?since=-1") as response:
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid_since"
    async with session.post(
        f"{gateway.v1}/threads/thread_a/runs/run_b/submit_tool_outputs",
        data=b'{"stream": true, "tool_outputs": "nope"}',
        headers=HEADERS,
    ) as response:
        assert response.status == 400
    # A malformed body for the upstream is the upstream's 400, passed through.
    async with session.post(f"{gateway.v1}/threads", data=b"{oops", headers=HEADERS) as response:
        assert response.status == 400
        await error_of(response)

    first = await session.get(f"{gateway.url}/streams/threads/thread_full")
    assert first.status == 200
    async with session.get(f"{gateway.url}/streams/threads/thread_full") as second:
        assert second.status == 429
        assert (await error_of(second))["code"] == "too_many_subscribers"
    first.close()


@pytest.mark.asyncio
async def test_cors_preflight_and_headers(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(cors_origins=("https://app.example",))
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with session.options(f"{gateway.v1}/threads", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    async with session.options(
        f"{gateway.v1}/threads", headers={**preflight, "Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        # It varies with the Origin all the same: no shared cache may give it to another.
        assert response.headers["Vary"] == "Origin"
    async with session.get(f"{gateway.url}/healthz") as response:
        assert response.headers["Vary"] == "Origin"
    async with session.get(
        f"{gateway.url}/streams/runs/run_none", headers={"Origin": "https://app.example"}
    ) as response:
        assert response.status == 404
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "runcast-subscribe-token" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/responses", {"model": "gpt-5", "input": "Hi"}),
        ("/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}),
    ],
)
async def test_cors_exposes_every_header_a_creator_gets(
    start_gateway: StartGateway, session: aiohttp.ClientSession, path: str, body: dict[str, object]
) -> None:
    # A browser script reads only the response headers listed in Expose-Headers.
    gateway = await start_gateway(cors_origins=("https://app.example",))
    headers = {**HEADERS, "Origin": "https://app.example", "Runcast-Channel": "session-9"}
    async with session.post(
        f"{gateway.v1}{path}", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status == 200
        await response.read()
        exposed = set(response.headers["Access-Control-Expose-Headers"].split(", "))
        ours = {name.lower() for name in response.headers if name.lower().startswith("runcast-")}
    assert len(ours) >= 4
    assert ours <= exposed


@pytest.mark.parametrize("channel", ["run:run_abc123", "channel:a.b_c-9", 'thread:th\u00e9"\\'])
def test_minted_tokens_are_the_tokens_pyjwt_makes(channel: str) -> None:
    secret = SECRET.encode()
    callers = CallerAuth((), upstream_key_held=False)
    minted = TokenAuthority(secret, ttl=60, open_mode=False, callers=callers).mint(channel)
    claims = jwt.decode(minted.token, secret, algorithms=["HS256"], issuer="runcast")
    assert claims == {
        "sub": channel,
        "iat": claims["iat"],
        "exp": minted.expires_at,
        "iss": "runcast",
    }
    assert jwt.get_unverified_header(minted.token) == {"alg": "HS256", "typ": "JWT"}
    if channel.isascii():
        assert minted.token == jwt.encode(claims, secret, algorithm="HS256")
