"""The serve benchmark's in-repo peer: a naive aiohttp broadcaster, one asyncio.Queue per subscriber.

What a developer writes first: ``/v1/*`` is proxied to the upstream; a streamed run's SSE body is
split into events, each gets the thread channel's next seq, goes to the creator, then into every
subscriber's queue; each subscriber's handler awaits its queue and writes each event itself (SSE
``id:/event:/data:`` frames, or WebSocket text ``{"seq":n,"event":...,"data":...}``, the same
bytes as runcast's). A subscriber whose queue is full is dropped. Run on uvloop, like runcast.

    python bench/_serve_peer.py --port P --upstream http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import uvloop
from aiohttp import web

QUEUE_EVENTS = 100_000
Channels = dict[str, dict[asyncio.Queue[tuple[int, bytes, bytes]], None]]
CHANNELS = web.AppKey("channels", dict)
SEQS = web.AppKey("seqs", dict)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
FORWARD = ("Authorization", "Content-Type", "OpenAI-Beta", "Accept")


def _sse(seq: int, name: bytes, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, name, data)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def subscribe(request: web.Request) -> web.StreamResponse:
    channels: Channels = request.app[CHANNELS]
    subs = channels.setdefault(request.match_info["thread_id"], {})
    queue: asyncio.Queue[tuple[int, bytes, bytes]] = asyncio.Queue(QUEUE_EVENTS)
    subs[queue] = None
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()  # no pings: the clients do not answer them
            await ws.prepare(request)
            while True:
                seq, name, data = await queue.get()
                text = data.decode() if name != b"done" else '"[DONE]"'
                await ws.send_str(f'{{"seq":{seq},"event":"{name.decode()}","data":{text}}}')
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        while True:
            seq, name, data = await queue.get()
            await resp.write(_sse(seq, name, data))
    finally:
        subs.pop(queue, None)


def _broadcast(request: web.Request, thread_id: str, seq: int, name: bytes, data: bytes) -> None:
    subs = request.app[CHANNELS].get(thread_id, {})
    for queue in list(subs):
        try:
            queue.put_nowait((seq, name, data))
        except asyncio.QueueFull:
            subs.pop(queue, None)


async def proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    url = request.app[UPSTREAM] + "/" + request.match_info["path"]
    headers = {k: request.headers[k] for k in FORWARD if k in request.headers}
    client = request.app[CLIENT]
    parts = request.match_info["path"].split("/")
    streamed = (
        request.method == "POST"
        and len(parts) == 3
        and parts[0] == "threads"
        and b'"stream"' in body
    )
    async with client.request(
        request.method, url, params=request.query, data=body, headers=headers
    ) as up:
        if not streamed or up.status != 200:
            return web.Response(
                status=up.status, body=await up.read(), content_type=up.content_type
            )
        thread_id = parts[1]
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        seqs: dict[str, int] = request.app[SEQS]
        buf = b""
        async for chunk in up.content.iter_any():
            buf += chunk
            *blocks, buf = buf.split(b"\n\n")
            for block in blocks:
                name, data = b"message", b""
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:]
                    elif line.startswith(b"data: "):
                        data = line[6:]
                seq = seqs.get(thread_id, 0) + 1
                seqs[thread_id] = seq
                await resp.write(_sse(seq, name, data))
                _broadcast(request, thread_id, seq, name, data)
        await resp.write_eof()
        return resp


async def _client_ctx(app: web.Application) -> object:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        app[CLIENT] = client
        yield


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[CHANNELS] = {}
    app[SEQS] = {}
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_client_ctx)
    app.router.add_get("/healthz", health)
    app.router.add_get("/streams/threads/{thread_id}", subscribe)
    app.router.add_route("*", "/v1/{path:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    # aiohttp's defaults otherwise (backlog 128), as a first version would have them; a handler
    # waiting on its queue learns of its client's departure only by being cancelled
    web.run_app(
        create_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        shutdown_timeout=2.0,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
