"""The serve benchmark's native subscriber clients: ``bench/native/subscribers.c``, driven as the
Python client processes are.

At N = 1,000 and 200 events/s the two Python client processes must take 200,000 reads/s and sit
at 0.9-0.98 of their core: the latency, stalls and the creator's lag they measure are then mostly
their own backlog. The C program does the same work (the same request, the same seq scanning and
bookkeeping, the same per-read records and 10 µs histogram; see its header) at a fraction of the
cost. :func:`build` compiles it on demand with ``cc -O2`` into a cache outside the repository
(``$XDG_CACHE_HOME/runcast-bench`` or ``~/.cache/runcast-bench``, keyed by the source's hash);
:class:`NativeProc` runs one as a child process on the clients' CPU and speaks the driver's
commands (connect / arm / wait / latency / close / stop) to it over its stdin and stdout: one line
per command and answer, binary blobs (int64s) for the first-receipt tables and the histograms.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from _serve_clients import subscribe_request

SOURCE = Path(__file__).resolve().parent / "native" / "subscribers.c"
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra"]


def compiler() -> str | None:
    """The C compiler to use (``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runcast-bench"


def build() -> Path:
    """The compiled client, built now if the cache has none for this source and these flags."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on the PATH")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([cc, *CFLAGS]).encode()).hexdigest()[:16]
    out = cache_dir() / f"subscribers-{key}"
    if out.exists():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home: a private directory under the temporary one
        out = Path(tempfile.gettempdir()) / f"runcast-bench-{os.getuid()}" / out.name
        if out.exists():
            return out
        out.parent.mkdir(mode=0o700, exist_ok=True)
    # built beside its final name, then renamed: concurrent builds never see a partial binary
    fd, tmp = tempfile.mkstemp(prefix="subscribers-", dir=out.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed on {SOURCE.name}: {done.stderr[-2000:]}")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


class NativeProc:
    """One native client process, with the driver's ``Proc`` interface: ``send(*cmd)``,
    ``recv(timeout)``, ``stop()`` and ``proc.pid`` (its CPU is the clients' CPU)."""

    def __init__(self, binary: Path, cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        self._buf = bytearray()
        self._op = ""

    def send(self, *cmd: Any) -> None:
        op = self._op = cmd[0]
        if op == "connect":
            _, url, transport, n, timeout, seq_in = cmd
            host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
            request = subscribe_request(url, transport)
            line = f"connect {host} {port} {transport} {n} {timeout} {seq_in} {len(request)}\n"
            self._in.write(line.encode() + request)
        elif op == "arm":
            self._in.write(f"arm {int(cmd[1])}\n".encode())
        elif op == "wait":
            self._in.write(f"wait {int(cmd[1])} {float(cmd[2])}\n".encode())
        elif op == "latency":
            table: bytes = cmd[1]
            self._in.write(f"latency {len(table)}\n".encode() + table)
        elif op in ("close", "stop"):
            self._in.write(f"{op}\n".encode())
        else:
            raise ValueError(f"unknown command {op!r}")
        self._in.flush()

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self._out], [], [], left)[0]:
            raise TimeoutError(f"no answer from the native client {self.proc.pid}")
        chunk = os.read(self._out, 1 << 20)
        if not chunk:
            raise RuntimeError(f"the native client {self.proc.pid} exited ({self.proc.poll()})")
        self._buf += chunk

    def _line(self, deadline: float) -> bytes:
        while (end := self._buf.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line

    def _exactly(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._fill(deadline)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        line = self._line(deadline)
        if self._op in ("arm", "close"):
            return line.decode()
        answer: dict[str, Any] = json.loads(line)
        # the blob that follows the line: it is on its way, a generous deadline of its own
        more = max(deadline, time.monotonic() + 60)
        if self._op == "wait":
            answer["first_receipt"] = self._exactly(answer.pop("first_receipt_len"), more)
        elif self._op == "latency":
            pairs = array("q")
            pairs.frombytes(self._exactly(16 * answer.pop("buckets"), more))
            answer["hist"] = dict(zip(pairs[::2], pairs[1::2], strict=True))
        return answer

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._in.write(b"stop\n")
            self._in.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
