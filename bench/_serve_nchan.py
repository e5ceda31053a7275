"""The serve benchmark's nchan case: nginx with ``libnginx-mod-nchan`` as the fan-out server.

nginx runs one process (``master_process off``, one worker's work) alone on the server CPU, as
``runcast serve`` does. Subscribers use the same paths as on runcast
(``/streams/threads/{id}``: nchan's EventSource or WebSocket subscriber, new messages only); a
publisher on the clients' CPU plays the relay's part: it streams the run from ``runcast mock``
itself (raw bytes over aiohttp), numbers each upstream event and publishes it at once over one
WebSocket to nchan's publisher location as ``{"seq":n,"event":name,"data":<the event's JSON>}``
(nchan has no batch publish: one message per event). nchan's own message ids
(``<time>:<tag>``) are not seqs, so the clients read the seq from the head of each message.
There is no creator copy: nchan is a pub/sub server, not a gateway, so its creator lag is NaN.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from _serve_procs import SERVER_CPU, Child, free_port

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

_CONF = """
load_module {module};
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 1048576;
events {{ worker_connections 1000000; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=65535;
    location = /healthz {{ return 200 "ok"; }}
    location ~ ^/streams/threads/([^/]+)$ {{
      nchan_subscriber;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
    }}
    location ~ ^/pub/([^/]+)$ {{
      nchan_publisher http websocket;
      nchan_channel_id $1;
      nchan_message_buffer_length 50000;
      nchan_message_timeout 10m;
    }}
  }}
}}
"""


def available() -> str | None:
    """Why nchan cannot run here (None: it can)."""
    if shutil.which("nginx") is None:
        return "nginx is not installed"
    if not MODULE.exists():
        return f"{MODULE} is missing (apt-get install libnginx-mod-nchan)"
    return None


def start_nchan() -> tuple[Child, str]:
    """nginx + nchan on a free port, alone on the server CPU; returns it and its root URL."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="serve_bench_nchan_"))
    conf = workdir / "nginx.conf"
    conf.write_text(_CONF.format(module=MODULE, dir=workdir, port=port))
    nginx = shutil.which("nginx")
    assert nginx is not None
    child = Child("nginx (nchan)", [nginx, "-c", str(conf), "-p", str(workdir)], SERVER_CPU)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or child.proc.poll() is not None:
                log = (
                    (workdir / "error.log").read_text() if (workdir / "error.log").exists() else ""
                )
                raise RuntimeError(f"nginx did not start: {child.output()} {log}") from None
            time.sleep(0.05)
    return child, f"http://127.0.0.1:{port}"


async def publish_run(
    upstream: str, nchan: str, assistant_id: str, thread_id: str
) -> tuple[int, dict[int, int]]:
    """Stream one run from the simulator and publish each of its events to ``thread_id``'s
    channel as it arrives: the number of events, and no creator arrivals."""
    seq = 0
    tail = b""
    ws_url = nchan.replace("http", "ws", 1) + f"/pub/{thread_id}"
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(ws_url) as publisher,
        session.post(
            f"{upstream}/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
            headers={"Authorization": "Bearer bench", "OpenAI-Beta": "assistants=v2"},
        ) as run,
    ):
        run.raise_for_status()
        async for chunk in run.content.iter_any():
            buf = tail + chunk
            *frames, tail = buf.split(b"\n\n")
            for frame in frames:
                name, data = "message", b""
                for line in frame.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if not frame.strip():
                    continue
                seq += 1
                body = data if data.startswith(b"{") else orjson.dumps(data.decode())
                await publisher.send_str(
                    (b'{"seq":%d,"event":%s,"data":%s}' % (seq, orjson.dumps(name), body)).decode()
                )
    return seq, {}
