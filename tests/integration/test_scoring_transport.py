"""The scoring module's transport as a real process: back-pressure, a graceful stop with a request in
flight, worker processes sharing the port, bytes that are not HTTP, and the former transport.

A request is held in run() deterministically: the entry script writes a "started" file and waits
for a "release" file the test creates (bounded: it gives up after 60 s)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.test_scoring_server import DIGITS, REPO, Server, model_dir, raw_exchange, start_server
from tests.support.processes import wait_for

HOLDING_SCORE = """
import os
import time

def init():
    pass

def run(raw):
    if raw.startswith("hold"):
        open(os.environ["HOLD_STARTED"], "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["HOLD_RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"echo": raw}
"""


class Held:
    """A /score request held in run() on its own thread, until ``release()``."""

    def __init__(self, server: Server, workdir: Path) -> None:
        self.started, self.release_file = workdir / "started", workdir / "release"
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._post, args=(server.url,), daemon=True)
        self._thread.start()
        wait_for(self.started.exists, timeout=30, what="run() to start")

    def _post(self, url: str) -> None:
        try:
            self.response = httpx.post(url + "/score", content=b"hold", timeout=60)
        except Exception as exc:
            self.error = exc

    def release(self) -> httpx.Response:
        self.release_file.touch()
        self._thread.join(60)
        assert self.response is not None, self.error
        return self.response


def holding_server(tmp_path: Path, *args: str) -> Server:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(HOLDING_SCORE)
    env = {"HOLD_STARTED": str(tmp_path / "started"), "HOLD_RELEASE": str(tmp_path / "release")}
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--source-dir", str(src),
        "--entry-script", "score.py", *args, env=env,
    )  # fmt: skip
    assert server.status()["state"] == "Ready", server.log.read_text()
    return server


def test_past_max_concurrent_requests_the_answer_is_503_with_retry_after(tmp_path: Path) -> None:
    server = holding_server(tmp_path, "--workers", "1", "--max-concurrent-requests", "1", "--max-queue-wait-ms", "2500")
    try:
        held = Held(server, tmp_path)
        turned_away = httpx.post(server.url + "/score", content=b"second", timeout=30)
        assert turned_away.status_code == 503 and turned_away.headers["retry-after"] == "3"
        assert "busy" in turned_away.json()["error"]
        assert httpx.get(server.url + "/").text == "Healthy"  # probes never queue behind the model
        response = held.release()
        assert response.status_code == 200 and response.json() == {"echo": "hold"}
        assert httpx.post(server.url + "/score", content=b"again", timeout=30).json() == {"echo": "again"}
    finally:
        assert server.stop() == 0


def test_sigterm_answers_the_request_in_flight_then_exits_0(tmp_path: Path) -> None:
    server = holding_server(tmp_path, "--workers", "1")
    try:
        held = Held(server, tmp_path)
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "received SIGTERM" in server.log.read_text(), timeout=30, what="the stop to begin")

        def refuses_connections() -> bool:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except OSError:
                return True
            return False

        wait_for(refuses_connections, timeout=30, what="the listener to close")
        assert server.proc.poll() is None  # still draining: the held request is not answered yet
        response = held.release()
        assert response.status_code == 200 and response.json() == {"echo": "hold"}
        assert response.headers["connection"] == "close"
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def test_workers_share_the_port_and_one_process_writes_the_status(tmp_path: Path) -> None:
    status_file, log = tmp_path / "status.json", tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.modules.scoring", "--model-dir", str(model_dir(tmp_path)),
             "--port", "0", "--workers", "2", "--status-file", str(status_file), "--log-level", "DEBUG",
             "--edgefleet-device", "dev-1", "--edgefleet-spec", "abc"],
            cwd=REPO, stdout=out, stderr=out,
        )  # fmt: skip
    server = Server(proc, 0, status_file, log)
    try:
        wait_for(lambda: status_file.exists() and server.status()["state"] == "Ready", timeout=60, what="Ready")
        status = server.status()
        server.port = status["port"]
        assert status["pid"] == proc.pid and server.port != 0
        workers = {c.pid for c in psutil.Process(proc.pid).children()}
        assert len(workers) == 2
        for pid in workers:
            listening = [c for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
            assert [c.laddr.port for c in listening] == [server.port]
            # a restarted agent adopts the module by the marks on its command line: the supervisor's only
            cmdline = psutil.Process(pid).cmdline()
            assert not any(a.startswith("--edgefleet-") for a in cmdline) and "--status-file" in cmdline
        assert "--edgefleet-device" in psutil.Process(proc.pid).cmdline()
        assert httpx.get(server.url + "/edgefleet/status").json() == status  # whichever worker answers
        for _ in range(60):  # each on a new connection: the kernel spreads them over the two sockets
            assert httpx.get(server.url + "/v2/health/live").status_code == 200
        answered = {int(pid) for pid in re.findall(r"/v2/health/live -> 200 \(worker (\d+)\)", log.read_text())}
        assert answered == workers
        assert server.stop() == 0
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in workers)
    finally:
        server.stop()


NOT_HTTP = [
    b"GARBAGE\r\n\r\n",
    bytes(range(256)) * 8,
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS client hello
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",
    b"POST /score HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1_000_000,  # 413, body still coming
]
HANG_UPS = [  # sent, then the client goes away without waiting for an answer
    b"POST /score HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\n",
    b"\r\n\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n" * 100,
]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bytes_that_are_not_http_never_take_the_server_down(tmp_path: Path, workers: str) -> None:
    server = start_server(tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--workers", workers)
    try:
        assert server.status()["state"] == "Ready", server.log.read_text()
        for junk in NOT_HTTP:
            answer = raw_exchange(server.port, junk, timeout=5)
            assert answer == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answer), (junk[:40], answer[:200])
            assert httpx.get(server.url + "/").text == "Healthy"
        for junk in HANG_UPS:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(junk)
            assert httpx.get(server.url + "/").text == "Healthy"
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


def test_the_former_threading_transport_still_serves(tmp_path: Path) -> None:
    env = {"EDGEFLEET_TRANSPORT": "threading"}
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--source-dir", str(DIGITS / "src"),
        "--entry-script", "score.py", env=env,
    )  # fmt: skip
    try:
        assert server.status()["state"] == "Ready", server.log.read_text()
        r = httpx.post(server.url + "/score", json={"data": [[0.0] * 64]}, timeout=30)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        assert "threading transport" in server.log.read_text()
    finally:
        assert server.stop() == 0
