"""The asyncio transport in process: a recording transport shows what leaves and in how many writes;
a real socket shows TCP_NODELAY. The service is real, with an entry script that echoes its input and
can block until the test releases it."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgefleet.modules.scoring import context
from edgefleet.modules.scoring.admission import Admission
from edgefleet.modules.scoring.aio import (
    CONTINUE,
    LINGER_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HttpConnection,
    HttpServer,
    InferencePool,
    new_event_loop,
)
from edgefleet.modules.scoring.config import ServerConfig
from edgefleet.modules.scoring.service import ScoringService
from edgefleet.protocol.module import ModuleRunState

SCRIPT = """
import threading

started = threading.Event()
release = threading.Event()
calls = []


def init():
    pass


def run(raw):
    calls.append(raw)
    if raw.startswith("block"):
        started.set()
        release.wait(30)
    return {"echo": raw}
"""
LIMIT = 4096


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScoringService]:
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")  # the service sets it, as in its own process
    monkeypatch.setattr(context, "_active", None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCRIPT)
    svc = ScoringService(
        ServerConfig(model_dir=tmp_path, source_dir=src, entry_script="score.py", max_request_bytes=LIMIT)
    )
    assert svc.initialise() is ModuleRunState.READY
    yield svc
    svc.entry.module.release.set()  # type: ignore[union-attr]


def script(service: ScoringService) -> Any:
    assert service.entry is not None
    return service.entry.module


@dataclass
class Recorder:
    """An asyncio transport that records instead of sending."""

    writes: list[bytes] = field(default_factory=list)
    closed: bool = False
    reading: bool = True
    eof: bool = False  # write_eof(): half-closed

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: list[bytes]) -> None:
        self.writes.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@dataclass
class Client:
    conn: HttpConnection
    out: Recorder

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.conn.data_received(chunk)

    async def answers(self, n: int) -> list[bytes]:
        """Wait (bounded) until ``n`` writes have left, and return them."""
        for _ in range(5000):
            if len(self.out.writes) >= n:
                break
            await asyncio.sleep(0.002)
        assert len(self.out.writes) >= n, self.out.writes
        return self.out.writes


@dataclass
class Harness:
    server: HttpServer

    def connect(self) -> Client:
        conn, out = HttpConnection(self.server), Recorder()
        conn.connection_made(out)  # type: ignore[arg-type]
        return Client(conn, out)


async def _harness(service: ScoringService, admission: Admission | None = None) -> Harness:
    server = HttpServer(
        service, admission or Admission(limit=8, byte_budget=4 * LIMIT, max_wait_s=30), port=1, threads=1
    )
    # what start() does, without a listening socket
    server.pool = InferencePool(asyncio.get_running_loop(), server.threads)
    server._drained = asyncio.Event()
    return Harness(server)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


GET_LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


def run(coro_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test on a fresh event loop (no pytest-asyncio here)."""

    def wrapper(service: ScoringService) -> None:
        asyncio.run(coro_fn(service))

    wrapper.__name__ = coro_fn.__name__
    return wrapper


# ---- one write per response -------------------------------------------------------------------------


@run
async def test_each_response_leaves_in_one_write_and_the_connection_stays_open(service: ScoringService) -> None:
    client = (await _harness(service)).connect()
    request = post("/score", b'{"x": 1}')
    client.send(GET_LIVE, request[:20], request[20:-3], request[-3:])  # the POST in pieces
    first, second = await client.answers(2)
    for answer, body in ((first, b'{"live":true}'), (second, b'{"echo":"{\\"x\\": 1}"}')):
        status, headers, rest = parse(answer)
        assert status == 200 and rest == body and int(headers["content-length"]) == len(body)
        assert "connection" not in headers
    assert not client.out.closed
    assert script(service).calls == ['{"x": 1}']


@run
async def test_pipelined_requests_are_answered_in_order(service: ScoringService) -> None:
    client = (await _harness(service)).connect()
    client.send(post("/score", b"a") + GET_LIVE + post("/score", b"b") + b"GET /nope HTTP/1.1\r\n\r\n")
    answers = await client.answers(4)
    assert [parse(a)[0] for a in answers] == [200, 200, 200, 404]
    assert [parse(a)[2] for a in answers[:3]] == [b'{"echo":"a"}', b'{"live":true}', b'{"echo":"b"}']


@run
async def test_a_compressed_body_is_inflated(service: ScoringService) -> None:
    client = (await _harness(service)).connect()
    client.send(post("/score", gzip.compress(b"hello"), "Content-Encoding: gzip"))
    (answer,) = await client.answers(1)
    assert parse(answer)[2] == b'{"echo":"hello"}'


@run
async def test_connection_close_and_http_1_0_close_after_the_answer(service: ScoringService) -> None:
    harness = await _harness(service)
    for request in (
        b"GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /v2/health/live HTTP/1.0\r\n\r\n",
    ):
        client = harness.connect()
        client.send(request + GET_LIVE)  # what follows a closing request is never answered
        (answer,) = await client.answers(1)
        assert parse(answer)[1]["connection"] == "close" and client.out.closed
        assert len(client.out.writes) == 1


# ---- refusals from the headers alone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_head", "status", "fragment"),
    [
        (b"POST /score HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413, b"exceeds the limit of 4096 bytes"),
        (b"POST /score HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 411, b"chunked"),
        (b"POST /score HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, b"malformed"),
        (b"GARBAGE\r\n\r\n", 400, b"malformed HTTP request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, b"malformed HTTP request"),  # a TLS hello
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431, b"exceed"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10), 431, b"exceed"),  # never ends
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n", 431, b"fields"),
        (b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n\r\n", 431, b"exceed"),
    ],
)
def test_refusals_answer_once_and_close_without_reading_on(
    service: ScoringService, request_head: bytes, status: int, fragment: bytes
) -> None:
    async def go() -> None:
        client = (await _harness(service)).connect()
        client.send(request_head, b"more bytes that are never parsed")
        (answer,) = await client.answers(1)
        got, headers, body = parse(answer)
        assert (got, headers["connection"]) == (status, "close") and fragment in body, answer
        assert client.out.eof and not client.out.closed  # half-closed: it lingers so the answer is read
        client.send(b"x" * (LINGER_BYTES - 100))  # what still comes is dropped, never parsed...
        assert not client.out.closed
        client.send(b"POST /score HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"z" * 100)  # ... but only so much
        assert client.out.closed
        assert len(client.out.writes) == 1 and script(service).calls == []

    asyncio.run(go())


@run
async def test_an_upgrade_request_is_answered_as_plain_http_then_closed(service: ScoringService) -> None:
    client = (await _harness(service)).connect()
    client.send(b"GET /v2/health/live HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes")
    (answer,) = await client.answers(1)
    assert parse(answer)[0] == 200 and client.out.closed


def test_a_missing_key_is_401_before_the_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")
    monkeypatch.setattr(context, "_active", None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCRIPT)
    keyed = ScoringService(
        ServerConfig(model_dir=tmp_path, source_dir=src, entry_script="score.py", auth_keys=("k" * 20,))
    )
    keyed.initialise()

    async def go() -> None:
        client = (await _harness(keyed)).connect()
        client.send(b"POST /score HTTP/1.1\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
        (answer,) = await client.answers(1)
        assert parse(answer)[0] == 401 and client.out.eof and CONTINUE not in answer
        open_client = (await _harness(keyed)).connect()
        open_client.send(GET_LIVE)
        assert parse((await open_client.answers(1))[0])[0] == 200

    asyncio.run(go())


@run
async def test_expect_100_continue_gets_the_100_only_when_the_request_is_taken(service: ScoringService) -> None:
    harness = await _harness(service)
    client = harness.connect()
    client.send(b"POST /score HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    (interim,) = await client.answers(1)
    assert interim == CONTINUE
    client.send(b"ok")
    answer = (await client.answers(2))[1]
    assert parse(answer)[2] == b'{"echo":"ok"}'
    refused = harness.connect()
    refused.send(b"POST /score HTTP/1.1\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n")
    (answer,) = await refused.answers(1)
    assert parse(answer)[0] == 413 and refused.out.eof


# ---- back-pressure ----------------------------------------------------------------------------------


async def _wait(event: threading.Event) -> None:
    assert await asyncio.get_running_loop().run_in_executor(None, event.wait, 10)


@run
async def test_past_the_limit_the_answer_is_503_with_retry_after_and_the_model_never_runs(
    service: ScoringService,
) -> None:
    harness = await _harness(service, Admission(limit=1, byte_budget=LIMIT, max_wait_s=30))
    busy, turned_away, probe = harness.connect(), harness.connect(), harness.connect()
    busy.send(post("/score", b"block"))
    await _wait(script(service).started)
    turned_away.send(post("/score", b"second"))
    (answer,) = await turned_away.answers(1)
    status, headers, body = parse(answer)
    assert status == 503 and headers["retry-after"] == "30" and b"busy" in body  # max_wait_s
    assert not turned_away.out.closed  # its body was dropped as it came: the connection goes on
    probe.send(GET_LIVE)  # the event loop is not blocked by the model
    assert parse((await probe.answers(1))[0])[0] == 200
    script(service).release.set()
    assert parse((await busy.answers(1))[0])[2] == b'{"echo":"block"}'
    turned_away.send(post("/score", b"third"))
    assert parse((await turned_away.answers(2))[1])[2] == b'{"echo":"third"}'
    assert script(service).calls == ["block", "third"]
    assert harness.server.admission.active == 0 and harness.server.admission.active_bytes == 0


@run
async def test_a_request_that_waits_past_max_queue_wait_is_503_without_running(service: ScoringService) -> None:
    harness = await _harness(service, Admission(limit=2, byte_budget=LIMIT, max_wait_s=0.001))
    busy, queued = harness.connect(), harness.connect()
    busy.send(post("/score", b"block"))
    await _wait(script(service).started)
    queued.send(post("/score", b"queued"))  # complete: it waits for the one inference thread
    await asyncio.sleep(0.01)  # longer than max_wait_s
    script(service).release.set()
    await busy.answers(1)
    (answer,) = await queued.answers(1)
    status, headers, body = parse(answer)
    assert status == 503 and "retry-after" in headers and b"waited over 1 ms" in body
    assert script(service).calls == ["block"]
    assert harness.server.admission.active == 0


@run
async def test_a_client_that_leaves_mid_request_gives_its_place_back(service: ScoringService) -> None:
    harness = await _harness(service, Admission(limit=1, byte_budget=LIMIT, max_wait_s=30))
    gone = harness.connect()
    gone.send(post("/score", b"12345")[:-2])  # admitted, body not complete
    assert harness.server.admission.active == 1
    gone.conn.connection_lost(None)
    assert harness.server.admission.active == 0
    running = harness.connect()
    running.send(post("/score", b"block-gone"))
    await _wait(script(service).started)
    running.conn.connection_lost(None)
    script(service).release.set()
    for _ in range(1000):  # released when its job returns, and nothing is written
        if harness.server.admission.active == 0:
            break
        await asyncio.sleep(0.002)
    assert harness.server.admission.active == 0 and running.out.writes == []


# ---- graceful stop ----------------------------------------------------------------------------------


@run
async def test_shutdown_answers_the_request_in_progress_and_closes_idle_connections(service: ScoringService) -> None:
    harness = await _harness(service)
    busy, idle = harness.connect(), harness.connect()
    idle.send(GET_LIVE)
    await idle.answers(1)
    busy.send(post("/score", b"block"))
    await _wait(script(service).started)
    stopping = asyncio.ensure_future(harness.server.shutdown(drain_s=30))
    await asyncio.sleep(0)
    assert idle.out.closed and not busy.out.closed and not stopping.done()
    script(service).release.set()
    (answer,) = await busy.answers(1)
    status, headers, _ = parse(answer)
    assert status == 200 and headers["connection"] == "close" and busy.out.closed
    busy.conn.connection_lost(None)  # what the transport does once closed
    idle.conn.connection_lost(None)
    assert await asyncio.wait_for(stopping, 10) is True


# ---- real sockets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop_factory", [new_event_loop, asyncio.new_event_loop], ids=["default", "asyncio"])
def test_accepted_sockets_have_tcp_nodelay(
    service: ScoringService, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    loop = loop_factory()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(service, Admission(limit=8, byte_budget=LIMIT, max_wait_s=30), port=0, threads=1)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    asyncio.run_coroutine_threadsafe(server.start(listener), loop).result(10)
    asyncio.run_coroutine_threadsafe(server.begin(), loop).result(10)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(GET_LIVE)
            assert client.recv(4096).startswith(b"HTTP/1.1 200")

            async def nodelay() -> list[int]:
                return [
                    c.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    for c in server.connections
                    if c.transport is not None
                ]

            flags = asyncio.run_coroutine_threadsafe(nodelay(), loop).result(10)
            assert len(flags) == 1 and flags[0] != 0
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
