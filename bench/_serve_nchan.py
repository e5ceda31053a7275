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
from pathlib import Path

import aiohttp
import orjson
from _nginx import HEAD, TEMP_PATHS, start_nginx
from _serve_procs import Child

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

_CONF = (
    "load_module {module};\n"
    + HEAD
    + "http {{"
    + TEMP_PATHS
    + """  server {{
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
)


def available() -> str | None:
    """Why nchan cannot run here (None: it can)."""
    if shutil.which("nginx") is None:
        return "nginx is not installed"
    if not MODULE.exists():
        return f"{MODULE} is missing (apt-get install libnginx-mod-nchan)"
    return None


def start_nchan() -> tuple[Child, str]:
    """nginx + nchan on a free port, alone on the server CPU; returns it and its root URL."""
    return start_nginx("nginx (nchan)", _CONF, module=MODULE)


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
