"""``runcast serve --workers N`` (gateway/workers.py), and the Redis mode's state and settings.

Real processes: a private ``redis-server``, a ``runcast mock`` upstream and the supervisor with
its two workers on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
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
    sse_subscribe,
    stream_run,
    subscription_ended,
)
from openai import AsyncOpenAI
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py
from test_http_recovery import free_port, start_mock_process, stop

from gateway import workers as supervising
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
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[psutil.Process], list[str]]]:
    """``runcast serve --workers 2`` once both workers listen: (supervisor, workers, the stderr
    lines so far and to come)."""
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
        yield proc, workers, lines
    finally:
        if proc.returncode is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                workers += psutil.Process(proc.pid).children()  # a worker started again
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
    async with supervisor(redis_server.url, mock_url, port) as (proc, workers, _):
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


def thread_token(thread_id: str) -> str:
    claims = {"sub": f"thread:{thread_id}", "iss": "runcast", "exp": int(time.time() + 60)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def serving(workers: list[psutil.Process], response: aiohttp.ClientResponse) -> psutil.Process:
    """The worker holding ``response``'s connection."""
    assert response.connection is not None and response.connection.transport is not None
    client = response.connection.transport.get_extra_info("sockname")[1]
    [worker] = [
        w for w in workers if any(c.raddr and c.raddr.port == client for c in w.net_connections())
    ]
    return worker


async def wait_for(lines: list[str], text: str, count: int = 1) -> None:
    async with asyncio.timeout(WAIT):
        while sum(text in line for line in lines) < count:
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_killed_worker_is_started_again_and_the_other_keeps_its_streams(
    redis_server: RedisServer, mock_url: str
) -> None:
    # It stopped the set (status 1): every client of the healthy worker lost its stream.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        supervisor(redis_server.url, mock_url, port) as (proc, workers, lines),
        aiohttp.ClientSession() as session,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probe,
        AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-x", max_retries=0, timeout=30) as sdk,
    ):
        assistant_id, thread_id = await new_thread(sdk)
        url = f"{base}/streams/threads/{thread_id}?token={thread_token(thread_id)}"
        response, subscriber = await sse_subscribe(session, url)
        survivor = serving(workers, response)
        [victim] = [w for w in workers if w.pid != survivor.pid]
        index = victim.environ()[supervising.WORKER_ENV]
        victim.kill()
        # Reaped, not only a zombie: a zombie's other threads may still hold its listening
        # socket, and a connection the kernel hands that socket as it closes is refused.
        async with asyncio.timeout(WAIT):
            while psutil.pid_exists(victim.pid):
                await asyncio.sleep(0.01)

        # A new connection each time: the port answers throughout, then from both workers.
        after = 0
        async with asyncio.timeout(WAIT):
            while after < 20:
                restarted = sum("listening on" in line for line in lines) == 3
                async with probe.get(f"{base}/healthz") as health:
                    assert health.status == 200
                after += restarted
        assert proc.returncode is None
        children = psutil.Process(proc.pid).children()
        assert survivor in children
        [started] = [c for c in children if c.pid not in (w.pid for w in workers)]
        assert started.environ()[supervising.WORKER_ENV] == index
        assert started.cmdline()[-2:] == ["--node-id", f"box-{index}r1"]
        [death] = [line for line in lines if "killed by SIGKILL" in line]
        assert f"worker {index} (pid {victim.pid})" in death
        assert f"starting it again in 0.1s as node box-{index}r1" in death

        # The stream held on the survivor was never cut: a run made now reaches it.
        assert not subscriber.done()
        await stream_run(sdk, assistant_id, thread_id)
        received = await subscription_ended(response, subscriber)
        assert not received.ended and received.names[-2:] == ["thread.run.completed", "done"]


@pytest.mark.asyncio
async def test_workers_dying_over_and_over_stop_the_set_with_status_1(
    redis_server: RedisServer, mock_url: str
) -> None:
    # A port held without SO_REUSEPORT: every worker, and every one started again, fails to
    # listen and exits 1 at once. It exited 1 at the first death, restarting nothing.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = await start_set(redis_server.url, mock_url, taken.getsockname()[1])
        async with asyncio.timeout(WAIT):
            _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 1, text
    assert "giving up, stopping the others" in text, text
    limit, window = supervising.CRASH_LIMIT, supervising.CRASH_WINDOW
    assert text.count("exited with status 1: starting it again in") == limit - 1
    assert text.count("exited with status 1\n") == 1
    assert f"{limit} worker deaths within {window:g}s: giving up, stopping the others" in text


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [0.0, 0.25, 0.4])
async def test_a_stop_signal_while_a_worker_waits_or_starts_again_stops_the_set_with_0(
    redis_server: RedisServer, mock_url: str, after: float
) -> None:
    port = free_port()
    async with supervisor(redis_server.url, mock_url, port) as (proc, workers, lines):
        workers[0].kill()
        await wait_for(lines, "starting it again in")
        await asyncio.sleep(after)  # in the delay, or the new worker still starting (0.1 s on)
        started = psutil.Process(proc.pid).children()  # the new worker, if it is on its way
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            # A new worker the signal ended before it could drain had nothing to drain: the
            # stop is clean. It exited 1 then.
            assert await proc.wait() == 0, "".join(lines)
            while not all(gone(w) for w in [*workers, *started]):
                await asyncio.sleep(0.05)
        assert not [
            p for p in psutil.process_iter(["cmdline"]) if str(port) in (p.info["cmdline"] or [])
        ]


@pytest.mark.asyncio
async def test_ctrl_c_to_the_process_group_drains_every_worker_and_exits_0(
    redis_server: RedisServer, mock_url: str
) -> None:
    # Each worker gets the group's SIGINT and the supervisor's copy of it. With nothing to
    # drain, the copy came after the worker's handlers were gone: a KeyboardInterrupt
    # traceback, and the set exited 1.
    port = free_port()
    proc = await start_set(redis_server.url, mock_url, port, start_new_session=True)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while sum("listening on" in line for line in lines) < 2:
                lines.append((await proc.stderr.readline()).decode())
            await asyncio.sleep(1)  # their start over (Redis connected, tasks settled)
            os.killpg(proc.pid, signal.SIGINT)
            lines += (await proc.stderr.read()).decode().splitlines(keepends=True)
            assert await proc.wait() == 0, "".join(lines)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines


def test_the_delay_before_a_worker_starts_again_doubles_until_it_lived_long_enough() -> None:
    delays = [supervising.next_delay(None, 0.0)]
    while len(delays) < 8:
        delays.append(supervising.next_delay(delays[-1], 1.0))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert supervising.next_delay(5.0, supervising.STEADY_AFTER) == 0.1
    names = [supervising.worker_node_id("box", 3, restarts) for restarts in range(3)]
    assert names == ["box-3", "box-3r1", "box-3r2"]


@pytest.mark.asyncio
async def test_workers_do_not_outlive_a_killed_supervisor(
    redis_server: RedisServer, mock_url: str
) -> None:
    # They kept answering on the port as orphans, and a new set shared it with them.
    async with supervisor(redis_server.url, mock_url, free_port()) as (proc, workers, _):
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
