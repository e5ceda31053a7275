"""The load test's command line: flags parsed and refused, and a target that cannot be reached or
does not speak the protocol reported in one clear line with a non-zero exit."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import build_parser
from gateway.cli import main as runcast_main
from gateway.errors import ConfigError
from gateway.loadtest import LoadSettings
from gateway.loadtest.cli import run, settings_from_args
from gateway.loadtest.workers import share


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """A server that answers 404 to every request: a target speaking none of the protocols."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/streams/"):
            # What an API (runcast mock, OpenAI) answers a request without its key: a 401
            # that is not a gateway asking for a subscribe token.
            body = b'{"error":{"message":"no key","type":"invalid_request_error","code":null}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(404)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--target", f"http://127.0.0.1:{_closed_port()}/v1", "--runs", "1"],
            "cannot reach http://127.0.0.1:",
        ),
        *(
            (
                [
                    *("--target", f"http://127.0.0.1:{_closed_port()}/v1", "--runs", "1"),
                    *("--protocol", protocol, "--subscribers-per-run", "0"),
                ],
                "cannot reach http://127.0.0.1:",
            )
            for protocol in ("responses", "chat")
        ),
        (
            ["--target", "{not_found}", "--protocol", "responses", "--subscribers-per-run", "0"],
            "answered 404: the target does not speak --protocol responses",
        ),
        (["--embedded", "--ramp", "10:x"], "--ramp: '10:x' is not LEVEL:SECONDS"),
        # The SSL error's errno 1 was read as EPERM: "operation not permitted".
        (
            ["--target", "{not_found_https}", "--protocol", "chat", "--subscribers-per-run", "0"],
            ": tls handshake failed: wrong version number (a plain http:// server?)",
        ),
        # Subscribers asked of an API: it was told to give --api-key, which then failed too.
        (["--target", "{not_found}"], "answered 401: is the target a runcast gateway?"),
    ],
)
def test_loadtest_bad_target_is_one_clear_line(
    args: list[str], message: str, not_found_server: str
) -> None:
    https = not_found_server.replace("http://", "https://")
    args = [arg.replace("{not_found}", not_found_server) for arg in args]
    args = [arg.replace("{not_found_https}", https) for arg in args]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("runcast loadtest: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and "Error(" not in proc.stderr


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A port whose TCP handshakes never complete: a listener that never accepts, its accept
    queue full, so the kernel drops further SYNs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                fillers.append(filler)
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            time.sleep(0.3)
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize("subscribers", ["0", "1"])
def test_the_reachability_probe_keeps_to_the_connect_timeout(
    unanswering_port: int, subscribers: str
) -> None:
    # The probes (probe_reach without subscribers, probe_tokens with) passed only
    # total=--request-timeout: a target that never completes its handshake took that long.
    began = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "loadtest", "--protocol", "chat",
            "--target", f"http://127.0.0.1:{unanswering_port}", "--runs", "1",
            "--subscribers-per-run", subscribers, "--progress-interval", "0",
            "--connect-timeout", "0.5", "--request-timeout", "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "timed out" in proc.stderr
    assert time.monotonic() - began < 10  # the interpreter's start included; it took 30 s


def test_loadtest_cli_parses_flags() -> None:
    ns = build_parser().parse_args(
        [
            "loadtest", "--target", "http://127.0.0.1:9/v1", "--api-key", "k", "--runs", "7",
            "--concurrency", "3", "--subscribers-per-run", "4", "--subscriber-transport", "mixed",
            "--scenario", "tool_call", "--rate", "2.5", "--arrival", "poisson", "--json",
            "out.json", "--protocol", "chat", "--ramp", "5:1,5:2", "--max-error-rate", "0.1",
            "--compare", "http://127.0.0.1:10", "--processes", "2", "--plot", "p.png",
            "--progress-interval", "1", "--give-up-after", "0",
        ]
    )  # fmt: skip
    settings = settings_from_args(ns)
    assert settings.root == "http://127.0.0.1:9"
    assert (settings.api_key, settings.runs, settings.duration) == ("k", 7, None)
    assert (settings.concurrency, settings.subscribers_per_run) == (3, 4)
    assert (settings.subscriber_transport, settings.scenario) == ("mixed", "tool_call")
    assert (settings.rate, settings.arrival, settings.json_path) == (2.5, "poisson", "out.json")
    assert (settings.protocol, settings.max_error_rate, settings.processes) == ("chat", 0.1, 2)
    assert (settings.compare, settings.plot_path, settings.progress_interval) == (
        "http://127.0.0.1:10",
        "p.png",
        1.0,
    )
    assert settings.time_limit == 3.0 and settings.run_limit == 7 and settings.give_up == 0
    assert settings.connections == 15


def test_loadtest_cli_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--embedded", "--runs", "2", "--duration", "1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadtest", "--runs", "2"])
    for args, message in (
        (["--concurrency", "0"], "--concurrency must be > 0"),
        (["--max-error-rate", "1.5"], "--max-error-rate must be between 0 and 1"),
        (["--processes", "3", "--concurrency", "2"], "--processes cannot exceed"),
        # Each process's share must be a load of its own: a worker refused it, saying
        # "--runs must be > 0, got 0" or "--rate must be between 0.01 and 1,000,000".
        (
            ["--runs", "1", "--processes", "2", "--concurrency", "2"],
            "--processes 2 is more than the 1 run(s) to start: one each",
        ),
        (
            ["--rate", "0.015", "--processes", "2", "--concurrency", "2", "--duration", "3"],
            "--rate 0.015 over --processes 2 is 0.0075 arrivals/s each, under 0.01: use fewer",
        ),
        (["--compare", "ftp://x"], "--compare must be an http(s) URL"),
        (["--rate", "nan"], "--rate must be > 0"),
        (["--give-up-after", "-1"], "--give-up-after must be >= 0"),
        # Refused before any load: found only at the end, they lost the whole report.
        (["--json", "/nonexistent-dir/r.json"], "--json: cannot write /nonexistent-dir/r.json"),
        (["--json", "/tmp"], "--json: /tmp is a directory"),
        (["--json", ""], "--json: cannot write ''"),
        (["--plot", "p.svg"], "--plot writes a PNG image: give a path ending in .png"),
        # Values that would exhaust the machine or hold the loop before any run.
        (["--concurrency", "100000000"], "--concurrency must be at most 100,000"),
        (["--ramp", "1000000000:1"], "--ramp: level 1e+09 is over 100,000 users"),
        (["--rate", "1e-7"], "--rate must be between 0.01 and 1,000,000"),
        (["--subscribers-per-run", "100000"], "--subscribers-per-run must be at most 1,000"),
        (["--sim-delay-ms", "inf"], "--sim-delay-ms must be between 0 and 60,000"),
        # A key goes into a header: a control character failed every run, or, with --embedded,
        # came out as a traceback.
        (["--api-key", "abc\ndef"], "--api-key holds '\\n' at character 4: a bearer key is"),
        (["--api-key", "k\x00"], "--api-key holds '\\x00' at character 2"),
        (["--api-key", "a b"], "--api-key holds a space at character 2"),
        (["--api-key", "clé"], "--api-key holds 'é' at character 3"),
    ):
        assert runcast_main(["loadtest", "--embedded", *args]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1 or "--api-key" not in args, err
    for target, message in (
        ("http://u:p@127.0.0.1:9", "--target must not carry user:password@: give --api-key"),
        ("http://", "--target must name a host"),
        ("http://127.0.0.1:9/v1?x=1", "--target must be a server root"),
    ):
        assert runcast_main(["loadtest", "--target", target]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError):
        LoadSettings(embedded=True, runs=1, duration=1.0)
    assert LoadSettings(embedded=True).run_limit == 100
    # The default 100 runs are split too (each worker ran 100 of its own).
    split = LoadSettings(embedded=True, processes=3, concurrency=3)
    assert [share(split, "http://127.0.0.1:9", i).run_limit for i in range(3)] == [34, 33, 33]
    assert LoadSettings(embedded=True, duration=2.0).run_limit is None


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_stopped_loadtest_leaves_no_worker_behind(tmp_path: Path, signum: int) -> None:
    # SIGTERM (timeout, CI runners, docker stop) ended the parent with no report, and its
    # --processes workers went on loading the target, then hung at exit on their queue.
    report = tmp_path / "r.json"
    args = [
        *("--embedded", "--duration", "60", "--concurrency", "2", "--processes", "2"),
        *("--subscribers-per-run", "0", "--sim-delay-ms", "5", "--json", str(report)),
        *("--progress-interval", "0.5"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "loadtest", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines: the workers run
            if "runs" in line and "completed" in line:
                break
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)]
        if signum == signal.SIGTERM:
            assert proc.returncode in (0, 1)
            assert "runs" in out and json.loads(report.read_text())["runs"]["started"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_while_the_target_is_probed_stops_at_once() -> None:
    # A target that accepts connections and answers nothing: Ctrl+C during the start-up probe
    # was ignored until the probe timed out (--request-timeout, 30 s by default).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway.cli", "loadtest"),
                *("--target", f"http://127.0.0.1:{port}", "--protocol", "chat"),
                *("--subscribers-per-run", "0", "--request-timeout", "25", "--runs", "1"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listener.settimeout(20)
            accepted, _ = listener.accept()  # the probe is under way
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            _, err = proc.communicate(timeout=20)
            accepted.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - started < 5, err
    assert "Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_report_file_that_cannot_be_written_loses_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both paths pass the check before the load (a writable folder, no directory) and fail only
    # at the end: the whole result was lost to a traceback. Now the table comes first, then one
    # line per file, and the exit status says the load test did not do all it was asked.
    full = tmp_path / "report.json"
    full.symlink_to("/dev/full")
    gone = tmp_path / "load.png"
    gone.symlink_to(tmp_path / "no such folder" / "load.png")
    settings = LoadSettings(
        embedded=True, runs=2, concurrency=1, sim_deltas=2, progress_interval=0,
        json_path=str(full), plot_path=str(gone),
    )  # fmt: skip
    assert run(settings) == 2
    out, err = capsys.readouterr()
    assert "\nverdict     passed" in out
    assert err.splitlines() == [
        f"runcast loadtest: error: --json: cannot write {full}: No space left on device",
        f"runcast loadtest: error: --plot: cannot write {gone}: No such file or directory",
    ]
