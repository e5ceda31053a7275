"""Log lines about requests and the upstream, through a real gateway: the access line bounded in
size, the upstream named without the secrets its URL may carry."""

from __future__ import annotations

import logging

import aiohttp
import orjson
import pytest
from http_helpers import Gateway, StartGateway, StartSim, raw_connection

from gateway import logs
from gateway.http.access import MAX_TARGET_CHARS


@pytest.mark.asyncio
async def test_an_access_line_shows_at_most_max_target_chars_of_the_target(
    gateway: Gateway, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A client sending 8 KB targets over a few connections wrote ~4 MB of access log a second.
    query = "x=" + "a" * 8000
    with caplog.at_level("INFO", logger="aiohttp.access"):
        async with session.get(f"{gateway.v1}/models?{query}") as response:
            await response.read()
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(line) < MAX_TARGET_CHARS + 200
    cut = len(f"/v1/models?{query}") - MAX_TARGET_CHARS
    assert f"aaa...({cut} more)" in line


@pytest.mark.asyncio
async def test_the_upstream_named_at_start_has_its_query_values_masked(
    start_gateway: StartGateway, start_sim: StartSim, caplog: pytest.LogCaptureFixture
) -> None:
    # `runcast config` masked ?code= (Azure Functions carry their key there); the start line
    # of `runcast serve` showed it.
    sim = await start_sim()
    with caplog.at_level("INFO", logger="runcast"):
        await start_gateway(upstream_url=f"{sim}?code=AZFUNCSECRET123")
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream ")]
    assert "AZFUNCSECRET123" not in line and "?code=***" in line


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "ids"),
    [
        ("POST", "/v1/threads/runs", {}),
        ("POST", "/v1/threads/thread_VICTIM%00x/runs", {}),
        ("POST", "/v1/threads/thread_A.evil/runs/run_B%20/cancel", {}),
        (
            "POST",
            "/v1/threads/thread_A/runs/run_B/cancel",
            {"thread_id": "thread_A", "run_id": "run_B"},
        ),
    ],
)
async def test_a_line_names_only_ids_that_are_whole_path_segments(
    gateway: Gateway, session: aiohttp.ClientSession, method: str, path: str, ids: dict[str, str]
) -> None:
    # A line was filed under "thread_id": "runs" for /threads/runs, and under thread_VICTIM for
    # /threads/thread_VICTIM%00x: a client could make its lines look like someone else's.
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(logs.formatter("json").format(record))  # type: ignore[method-assign]
    access = logging.getLogger("aiohttp.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        async with session.request(method, f"{gateway.url}{path}", json={}) as response:
            await response.read()
    finally:
        access.removeHandler(handler)
    [line] = lines
    record = orjson.loads(line)
    assert {k: v for k, v in record.items() if k.endswith("_id")} == ids


@pytest.mark.asyncio
async def test_a_quote_in_the_target_does_not_close_the_lines_quoted_field(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    # A raw `"` in the query string (sent as is: clients may not encode it) closed the access
    # line's "METHOD target" field early, so a reader splitting on quotes misread the line.
    reader, writer = await raw_connection(gateway.url)
    with caplog.at_level("INFO", logger="aiohttp.access"):
        writer.write(
            b'GET /healthz/x?q=a"b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
        )
        await reader.read()
    writer.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert line.count('"') == 2 and "q=a%22b" in line


@pytest.mark.asyncio
async def test_credential_query_values_are_masked_in_the_access_line(
    gateway: Gateway, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # Only `token` (and what the log redaction's shapes know: key=) was masked: ?password=,
    # ?secret=, ?client_secret=, ?sig=, ?code= were logged in clear.
    query = "password=PW1&secret=SEC2&client_secret=CS3&sig=SIG4&code=CODE5&limit=20&after=msg_1"
    with caplog.at_level("INFO", logger="aiohttp.access"):
        async with session.get(f"{gateway.url}/v1/models?{query}") as response:
            await response.read()
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    for value in ("PW1", "SEC2", "CS3", "SIG4", "CODE5"):
        assert value not in line
    assert (
        "/v1/models?password=***&secret=***&client_secret=***&sig=***&code=***&limit=20&after=msg_1"
        in line
    )
