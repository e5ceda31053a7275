"""``runcast serve --workers N`` (gateway/workers.py), and the Redis mode's state and settings.

Real processes: a private ``redis-server``, a ``runcast mock`` upstream and the supervisor with
its two workers on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil
import pytest
import pytest_asyncio
from http_helpers import (
    SECRET,
    WAIT,
    RecordingHandler,
    StartGateway,
    clean_environ,
    new_thread,
    sdk_client,
    stream_run,
)
from openai import AsyncOpenAI
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py
from test_http_recovery import free_port, start_mock_process, stop

from gateway.cli import main
from gateway.http.state import SETTINGS
from gateway.state.redis import STATE_NAMESPACE, state_client


def test_workers_without_the_redis_broker_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "2", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers needs --broker redis://HOST:PORT/DB" in err and "Traceback" not in err


def test_a_worker_count_past_the_bound_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--workers", "257", "--broker", "redis://127.0.0.1:1/0", "--port", "9"]
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal, as for other flags
        main([*argv, "--token-secret", SECRET, "--upstream", "http://127.0.0.1:1/v1"])
    assert refused.value.code == 2
    assert "must be at most 256, got 257" in capsys.readouterr().err


def test_redis_mode_needs_a_token_secret(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--broker", "redis://127.0.0.1:1/0", "--upstream", "http://127.0.0.1:1/v1"]
    assert main(argv) == 2
    assert "--broker redis:// needs --token-secret" in capsys.readouterr().err
    assert main(["serve", "--broker", "http://redis.example"]) == 2
    assert "broker must be 'memory' or redis://" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_in_redis_mode_the_run_state_is_written_to_redis(
    redis_server: RedisServer, start_gateway: StartGateway
) -> None:
    redis_server.flush()
    gateway = await start_gateway(broker=redis_server.url)
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    handler = await stream_run(sdk, assistant_id, thread_id)
    await sdk.close()
    assert handler.run_id is not None
    client = state_client(redis_server.url)
    try:
        # The run -> thread map auth reads on every node.
        thread = await client.hget(f"{STATE_NAMESPACE}:threads", handler.run_id)
        assert thread == thread_id.encode()
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def mock_url() -> AsyncIterator[str]:
    port = free_port()
    proc = await start_mock_process(port)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await stop(proc)


async def start_set(
    redis_url: str, upstream: str, port: int, *extra: str, **spawn: Any
) -> asyncio.subprocess.Process:
    """``runcast serve --workers 2`` started (stderr piped)."""
    argv = ["--workers", "2", "--broker", redis_url, "--upstream", upstream, *extra]
    argv += ["--token-secret", SECRET, "--port", str(port)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        *argv,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=clean_environ(),
        **spawn,
    )


@contextlib.asynccontextmanager
async def supervisor(
    redis_url: str, upstream: str, port: int, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[psutil.Process]]]:
    """``runcast serve --workers 2`` once both workers listen: (supervisor, workers)."""
    proc = await start_set(redis_url, upstream, port, "--node-id", "box", *extra)
    lines: list[str] = []
    listening = asyncio.Event()

    async def drain_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode())
            if sum("listening on" in line for line in lines) == 2:
                listening.set()

    reader = asyncio.create_task(drain_stderr())
    workers: list[psutil.Process] = []
    try:
        async with asyncio.timeout(WAIT):
            await listening.wait()
        workers = psutil.Process(proc.pid).children()
        yield proc, workers
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def gone(worker: psutil.Process) -> bool:
    try:
        return worker.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.asyncio
async def test_two_workers_share_the_port_serve_runs_and_stop_on_sigterm(
    redis_server: RedisServer, mock_url: str
) -> None:
    port = free_port()
    async with supervisor(redis_server.url, mock_url, port) as (proc, workers):
        assert len(workers) == 2
        assert sorted(w.cmdline()[-1] for w in workers) == ["box-0", "box-1"]
        for worker in workers:
            listens = [c for c in worker.net_connections() if c.status == psutil.CONN_LISTEN]
            assert [c.laddr.port for c in listens] == [port]

        async def one_run() -> RecordingHandler:
            # A client of its own per run: a new connection, which the kernel gives either worker.
            async with AsyncOpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0, timeout=30
            ) as sdk:
                assistant_id, thread_id = await new_thread(sdk)
                return await stream_run(sdk, assistant_id, thread_id)

        async with asyncio.timeout(WAIT):
            handlers = await asyncio.gather(*(one_run() for _ in range(4)))
        assert all(h.run_id and h.deltas > 0 for h in handlers)

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
        assert all(gone(w) for w in workers)


@pytest.mark.asyncio
async def test_a_worker_dying_stops_the_set_with_status_1(
    redis_server: RedisServer, mock_url: str
) -> None:
    async with supervisor(redis_server.url, mock_url, free_port()) as (proc, workers):
        workers[0].kill()
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 1
        assert all(gone(w) for w in workers)


@pytest.mark.asyncio
async def test_workers_do_not_outlive_a_killed_supervisor(
    redis_server: RedisServer, mock_url: str
) -> None:
    # They kept answering on the port as orphans, and a new set shared it with them.
    async with supervisor(redis_server.url, mock_url, free_port()) as (proc, workers):
        proc.kill()
        await proc.wait()
        async with asyncio.timeout(WAIT):
            while not all(gone(w) for w in workers):
                await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_each_worker_serves_its_own_metrics_on_the_next_port(
    redis_server: RedisServer, mock_url: str
) -> None:
    # All bound the one --metrics-address: the second failed and the set never started.
    metrics = free_port()
    while True:  # two free ports in a row
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", metrics + 1))
            break
        metrics = free_port()
    address = f"127.0.0.1:{metrics}"
    extra = ("--metrics-address", address)
    async with (
        supervisor(redis_server.url, mock_url, free_port(), *extra),
        aiohttp.ClientSession() as session,
    ):
        for port in (metrics, metrics + 1):
            async with session.get(f"http://127.0.0.1:{port}/metrics") as scraped:
                assert scraped.status == 200
                assert "runcast_runs_started_total" in await scraped.text()


@pytest.mark.asyncio
async def test_a_configuration_a_worker_refuses_stops_the_set_with_status_2(
    redis_server: RedisServer, mock_url: str
) -> None:
    # Found by the workers only (the open-file limit leaves no room for connections): a service
    # manager must not restart it for ever, as it would on status 1.
    proc = await start_set(
        redis_server.url,
        mock_url,
        free_port(),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300)),
    )
    async with asyncio.timeout(WAIT):
        _, err = await proc.communicate()
    assert proc.returncode == 2, err.decode()
    assert b"open-file limit" in err


@pytest.mark.asyncio
async def test_a_node_without_a_name_is_named_once_for_all_its_parts(
    redis_server: RedisServer, start_gateway: StartGateway
) -> None:
    first = await start_gateway(broker=redis_server.url)
    second = await start_gateway(broker=redis_server.url)
    names = [gateway.app[SETTINGS].node_id for gateway in (first, second)]
    assert all(names) and names[0] != names[1]
