"""The overhead benchmark's floor: a bare aiohttp pass-through proxy, no gateway at all.

``/v1/*`` goes to the upstream with the caller's headers that matter; a response is handed back
as its bytes come (a stream chunk by chunk, unparsed), through one client session without a
connection limit, on uvloop. Whatever a Python asyncio gateway adds on top of its extra hop, this
does not: the latency it adds is the hop's own on this machine.

    python bench/_bare_proxy.py --port P --upstream http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

CLIENT = web.AppKey("client", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
FORWARD = ("Authorization", "Content-Type", "OpenAI-Beta", "Accept")


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    url = request.app[UPSTREAM] + "/" + request.match_info["path"]
    headers = {k: request.headers[k] for k in FORWARD if k in request.headers}
    async with request.app[CLIENT].request(
        request.method, url, params=request.query, data=body, headers=headers
    ) as up:
        if up.content_type != "text/event-stream":
            return web.Response(
                status=up.status, body=await up.read(), content_type=up.content_type
            )
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def _client_ctx(app: web.Application) -> object:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        app[CLIENT] = client
        yield


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_client_ctx)
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/v1/{path:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvloop.install()
    web.run_app(create_app(args.upstream), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
