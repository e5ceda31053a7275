"""nginx as a bench peer: one process (``master_process off``) alone on the server CPU.

:func:`start_nginx` writes a configuration from a template (``{dir}`` and ``{port}`` filled
in, with whatever else the caller names), starts nginx on it and waits for its port. The
templates live with their benchmarks: nchan's fan-out (``_serve_nchan.py``) and a plain
pass-through proxy (``overhead_bench.py``).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from _serve_procs import SERVER_CPU, Child, free_port

HEAD = """
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 1048576;
events {{ worker_connections 1000000; multi_accept on; }}
"""
"""What every bench nginx starts with: one process in the foreground, its files in ``{dir}``."""

TEMP_PATHS = """
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
"""
"""The ``http`` block's first lines: no access log, temporary files in ``{dir}``."""


def start_nginx(name: str, template: str, **values: object) -> tuple[Child, str]:
    """nginx on a free port with ``template`` filled in; returns it and its root URL."""
    nginx = shutil.which("nginx")
    if nginx is None:
        raise RuntimeError("nginx is not installed")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench_nginx_"))
    conf = workdir / "nginx.conf"
    conf.write_text(template.format(dir=workdir, port=port, **values))
    child = Child(name, [nginx, "-c", str(conf), "-p", str(workdir)], SERVER_CPU)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or child.proc.poll() is not None:
                error_log = workdir / "error.log"
                log = error_log.read_text() if error_log.exists() else ""
                raise RuntimeError(f"{name} did not start: {child.output()} {log}") from None
            time.sleep(0.05)
    return child, f"http://127.0.0.1:{port}"
