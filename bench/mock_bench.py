"""Streamed events per second of the simulator, against naive per-event serialisation.

Each server runs alone in a child process (so on one core); the client, in this process, pulls
streamed runs with a large delta count over 127.0.0.1 and counts events (blank-line separators).
Peers, measured in the same run, serve the same event sequence built the naive way: every event a
whole dict passed to ``json.dumps``, either coalesced into 64 KiB writes like runcast or written
one event per ``write``. ``--protocol responses`` or ``chat`` measures the Responses
(``POST /v1/responses``, ``sequence_number`` and ``obfuscation`` on every delta) or Chat
Completions (data-only chunks) streams the same way, against naive peers of that protocol.

    .venv/bin/python bench/mock_bench.py [--deltas 200000] [--streams 3] [--uvloop]
        [--protocol assistants|responses|chat]
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
PROTOCOLS = ("assistants", "responses", "chat")
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

    async def responses(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        writer = _Writer(resp, per_event, data_only=False)
        now = int(time.time())
        response: dict[str, Any] = {
            "id": "resp_bench", "object": "response", "created_at": now, "status": "in_progress",
            "background": False, "error": None, "incomplete_details": None, "instructions": None,
            "max_output_tokens": None, "model": "gpt-5", "output": [], "parallel_tool_calls": True,
            "previous_response_id": None, "store": True, "temperature": 1.0, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": None, "metadata": {},
        }  # fmt: skip
        item: dict[str, Any] = {"id": "msg_b", "type": "message", "status": "in_progress",
                                "content": [], "role": "assistant"}  # fmt: skip
        await writer.emit({"type": "response.created", "response": response})
        await writer.emit({"type": "response.in_progress", "response": response})
        await writer.emit({"type": "response.output_item.added", "output_index": 0, "item": item})
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        common = {"item_id": "msg_b", "output_index": 0, "content_index": 0}
        await writer.emit({"type": "response.content_part.added", **common, "part": part})
        parts: list[str] = []
        for text in TextGenerator(0).fragments(deltas, words, first=True):
            parts.append(text)
            pad = "x" * (16 - len(json.dumps(text)) % 16)
            await writer.emit({"type": "response.output_text.delta", **common, "delta": text,
                               "logprobs": [], "obfuscation": pad})  # fmt: skip
        done = {**part, "text": "".join(parts)}
        await writer.emit({"type": "response.output_text.done", **common, "text": done["text"],
                           "logprobs": []})  # fmt: skip
        await writer.emit({"type": "response.content_part.done", **common, "part": done})
        item = {**item, "status": "completed", "content": [done]}
        await writer.emit({"type": "response.output_item.done", "output_index": 0, "item": item})
        response = {**response, "status": "completed", "output": [item]}
        await writer.emit({"type": "response.completed", "response": response})
        await writer.close()
        return resp

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        writer = _Writer(resp, per_event, data_only=True)
        head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": "gpt-4o", "service_tier": "default",
                "system_fingerprint": "fp_bench"}  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        await writer.emit(chunk({"role": "assistant", "content": "", "refusal": None}))
        for text in TextGenerator(0).fragments(deltas, words, first=True):
            await writer.emit(chunk({"content": text}))
        await writer.emit(chunk({}, "stop"))
        await writer.close(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/assistants", ok)
    app.router.add_post("/v1/threads", ok)
    app.router.add_post("/v1/threads/{thread_id}/runs", stream)
    return app


class _Writer:
    """The naive peers' writer: ``json.dumps`` per event, batched or one write per event."""

    def __init__(self, resp: web.StreamResponse, per_event: bool, *, data_only: bool) -> None:
        self.resp = resp
        self.per_event = per_event
        self.data_only = data_only
        self.pending: list[bytes] = []
        self.size = 0
        self.seq = 0

    async def emit(self, obj: dict[str, Any]) -> None:
        if self.data_only:
            frame = f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()
        else:
            obj = {"type": obj["type"], "sequence_number": self.seq, **obj}
            self.seq += 1
            data = json.dumps(obj, separators=(",", ":"))
            frame = f"event: {obj['type']}\ndata: {data}\n\n".encode()
        if self.per_event:
            await self.resp.write(frame)
            return
        self.pending.append(frame)
        self.size += len(frame)
        if self.size >= BATCH:
            await self.resp.write(b"".join(self.pending))
            self.pending.clear()
            self.size = 0
            await asyncio.sleep(0)

    async def close(self, trailer: bytes = b"") -> None:
        await self.resp.write(b"".join(self.pending) + trailer)


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


async def pull(base: str, streams: int, protocol: str) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(headers=HEADERS, timeout=timeout) as session:
        post: Callable[..., Awaitable[Any]] = session.post
        if protocol == "assistants":
            async with await post(base + "/assistants", json={"model": "gpt-4o"}) as resp:
                assistant = (await resp.json())["id"]
        events = 0
        for _ in range(streams):
            if protocol == "responses":
                url, body = base + "/responses", {"model": "gpt-5", "input": "Hi", "stream": True}
            elif protocol == "chat":
                message = {"role": "user", "content": "Hi"}
                url = base + "/chat/completions"
                body = {"model": "gpt-4o", "messages": [message], "stream": True}
            else:
                async with await post(base + "/threads", json={}) as resp:
                    thread = (await resp.json())["id"]
                url = f"{base}/threads/{thread}/runs"
                body = {"assistant_id": assistant, "stream": True}
            async with await post(url, json=body) as resp:
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
        events = asyncio.run(pull(f"http://127.0.0.1:{port}/v1", args.streams, args.protocol))
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
    parser.add_argument("--protocol", choices=PROTOCOLS, default="assistants")
    args = parser.parse_args()
    results = {mode: measure(mode, args) for mode in MODES}
    base = results["runcast"]["rate"]
    loop = "uvloop" if args.uvloop else "asyncio"
    print(
        f"\n{args.protocol}: {args.streams} streams x {args.deltas:,} deltas, "
        f"{args.tokens_per_delta} words/delta, "
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
