"""Streamed events per second of the simulator, against naive per-event serialisation.

Each server runs alone in a child process (so on one core); the client, in this process, pulls
streamed runs with a large delta count over 127.0.0.1 and counts events (blank-line separators).
Peers, measured in the same run, serve the same event sequence built the naive way: every event a
whole dict passed to ``json.dumps``, either coalesced into 64 KiB writes like runcast or written
one event per ``write``.

    .venv/bin/python bench/mock_bench.py [--deltas 200000] [--streams 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
from aiohttp import web

from gateway.mock import MockSettings, create_app
from gateway.mock.sink import SSE_HEADERS
from gateway.mock.textgen import TextGenerator

HEADERS = {"Authorization": "Bearer bench", "OpenAI-Beta": "assistants=v2"}
MODES = {
    "runcast": "runcast mock (byte templates, 64 KiB writes)",
    "naive-batched": "json.dumps per event, 64 KiB writes",
    "naive-per-event": "json.dumps per event, one write each",
}
BATCH = 65_536


# -- the naive peer server ------------------------------------------------------------------


def _run(status: str, now: int) -> dict[str, Any]:
    return {
        "id": "run_bench", "object": "thread.run", "created_at": now, "assistant_id": "asst_bench",
        "thread_id": "thread_bench", "status": status, "started_at": now, "expires_at": None,
        "cancelled_at": None, "failed_at": None, "completed_at": None, "required_action": None,
        "last_error": None, "model": "gpt-4o", "instructions": "", "tools": [], "metadata": {},
        "temperature": 1.0, "top_p": 1.0, "max_completion_tokens": None, "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None}, "incomplete_details": None,
        "usage": None, "response_format": "auto", "tool_choice": "auto", "parallel_tool_calls": True,
    }  # fmt: skip


def _step(status: str, now: int) -> dict[str, Any]:
    return {
        "id": "step_bench", "object": "thread.run.step", "created_at": now, "run_id": "run_bench",
        "assistant_id": "asst_bench", "thread_id": "thread_bench", "type": "message_creation",
        "status": status, "cancelled_at": None, "completed_at": None, "expired_at": None,
        "failed_at": None, "last_error": None, "usage": None, "metadata": {},
        "step_details": {"type": "message_creation", "message_creation": {"message_id": "msg_b"}},
    }  # fmt: skip


def _message(status: str, now: int, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [{"type": "text", "text": {"value": text, "annotations": []}}]
    return {
        "id": "msg_b", "object": "thread.message", "created_at": now, "assistant_id": "asst_bench",
        "thread_id": "thread_bench", "run_id": "run_bench", "status": status,
        "incomplete_details": None, "incomplete_at": None, "completed_at": None,
        "role": "assistant", "content": content, "attachments": [], "metadata": {},
    }  # fmt: skip


def naive_app(deltas: int, words: int, per_event: bool) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": "x_bench"})

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        pending: list[bytes] = []
        size = 0

        async def emit(event: str, obj: Any) -> None:
            nonlocal size
            frame = f"event: {event}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()
            if per_event:
                await resp.write(frame)
                return
            pending.append(frame)
            size += len(frame)
            if size >= BATCH:
                await resp.write(b"".join(pending))
                pending.clear()
                size = 0
                await asyncio.sleep(0)

        now = int(time.time())
        for name, status in (
            ("created", "queued"),
            ("queued", "queued"),
            ("in_progress", "in_progress"),
        ):
            await emit(f"thread.run.{name}", _run(status, now))
        await emit("thread.run.step.created", _step("in_progress", now))
        await emit("thread.run.step.in_progress", _step("in_progress", now))
        await emit("thread.message.created", _message("in_progress", now, None))
        await emit("thread.message.in_progress", _message("in_progress", now, None))
        parts: list[str] = []
        for index, text in enumerate(TextGenerator(0).fragments(deltas, words, first=True)):
            parts.append(text)
            part: dict[str, Any] = {"index": 0, "type": "text", "text": {"value": text}}
            if index == 0:
                part["text"]["annotations"] = []
            delta = {"id": "msg_b", "object": "thread.message.delta", "delta": {"content": [part]}}
            await emit("thread.message.delta", delta)
        await emit("thread.message.completed", _message("completed", now, "".join(parts)))
        await emit("thread.run.step.completed", _step("completed", now))
        await emit("thread.run.completed", _run("completed", now))
        if pending:
            await resp.write(b"".join(pending))
        await resp.write(b"event: done\ndata: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/assistants", ok)
    app.router.add_post("/v1/threads", ok)
    app.router.add_post("/v1/threads/{thread_id}/runs", stream)
    return app


# -- server process ---------------------------------------------------------------------------


def serve(mode: str, deltas: int, words: int, use_uvloop: bool, ports: Any) -> None:
    async def main() -> None:
        if mode == "runcast":
            app = create_app(MockSettings(deltas=deltas, tokens_per_delta=words, seed=0))
        else:
            app = naive_app(deltas, words, per_event=mode == "naive-per-event")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


# -- client -----------------------------------------------------------------------------------


async def pull(base: str, streams: int) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(headers=HEADERS, timeout=timeout) as session:
        post: Callable[..., Awaitable[Any]] = session.post
        async with await post(base + "/assistants", json={"model": "gpt-4o"}) as resp:
            assistant = (await resp.json())["id"]
        events = 0
        for _ in range(streams):
            async with await post(base + "/threads", json={}) as resp:
                thread = (await resp.json())["id"]
            body = {"assistant_id": assistant, "stream": True}
            async with await post(f"{base}/threads/{thread}/runs", json=body) as resp:
                assert resp.status == 200, await resp.text()
                last = b""
                async for chunk in resp.content.iter_any():
                    events += chunk.count(b"\n\n") + (last == b"\n" and chunk[:1] == b"\n")
                    last = chunk[-1:]
        return events


def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(
        target=serve, args=(mode, args.deltas, args.tokens_per_delta, args.uvloop, ports)
    )
    proc.start()
    try:
        port = ports.get(timeout=30)
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        t0 = time.perf_counter()
        events = asyncio.run(pull(f"http://127.0.0.1:{port}/v1", args.streams))
        wall = time.perf_counter() - t0
        cpu = sum(server.cpu_times()[:2]) - cpu0
    finally:
        proc.terminate()
        proc.join(10)
    return {
        "events": events,
        "wall": wall,
        "rate": events / wall,
        "cpu": cpu,
        "per_cpu": events / cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=200_000)
    parser.add_argument("--tokens-per-delta", type=int, default=3)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    args = parser.parse_args()
    results = {mode: measure(mode, args) for mode in MODES}
    base = results["runcast"]["rate"]
    loop = "uvloop" if args.uvloop else "asyncio"
    print(
        f"\n{args.streams} streams x {args.deltas:,} deltas, {args.tokens_per_delta} words/delta, "
        f"server loop {loop}, one server process (one core), client in another\n"
    )
    print(
        f"{'server':<48} {'events':>9} {'wall s':>7} {'events/s':>10} "
        f"{'srv CPU s':>9} {'ev/CPU-s':>10} {'runcast x':>9}"
    )
    for mode, r in results.items():
        print(
            f"{MODES[mode]:<48} {r['events']:>9,.0f} {r['wall']:>7.2f} {r['rate']:>10,.0f} "
            f"{r['cpu']:>9.2f} {r['per_cpu']:>10,.0f} {base / r['rate']:>8.2f}x"
        )


if __name__ == "__main__":
    main()
