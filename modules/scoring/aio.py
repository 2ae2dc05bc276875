"""The asyncio transport: an ``asyncio.Protocol`` over httptools' C parser (llhttp), on uvloop when
it is installed; ``ScoringService`` decides every answer, this only moves bytes.

Why this shape (figures in bench/README.md, "Scoring HTTP"):

- one write per response (``http.encode_response``) and TCP_NODELAY on every accepted socket: the
  former server sent headers and body in two writes, and on a kept-alive connection the second
  waited for the client's delayed ACK, 44 ms a request;
- the event loop parses and answers everything that needs no model (health, metadata, status) at
  once, so the agent's probes never queue behind inference; requests that run the model
  (``service.uses_model``) go to a few daemon threads (``InferencePool``): onnxruntime releases the
  GIL while it computes, entry scripts' run() are serialised by ``EntryScript`` anyway;
- back-pressure (``admission``) is decided from the headers, before the body is read: a request
  the worker does not take on is answered 503 with Retry-After and its body is dropped as it
  arrives, never held;
- a request refused from its headers (401, 411, 413, 431, a malformed request) is answered and the
  connection closed without parsing the body (what the client still sends is dropped for up to
  ``LINGER_S`` so that the answer is not lost to a reset); ``Expect: 100-continue`` gets the
  refusal instead of the 100;
- TLS is asyncio's, with a handshake timeout: a client that connects and never speaks holds its own
  connection and nothing else, and idle connections are closed after ``IDLE_TIMEOUT_S``;
- pipelined requests are answered in order, one at a time per connection.

``HttpServer.shutdown`` is the graceful stop: no new connections, idle ones closed, the requests in
progress answered (each with ``Connection: close``), then the connections closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

from edgefleet.modules.scoring.admission import Admission
from edgefleet.modules.scoring.errors import RequestError
from edgefleet.modules.scoring.http import (
    decode_body,
    encode_head,
    encode_response,
    header,
    http_date,
    overloaded,
    refusal,
    retry_after_s,
)
from edgefleet.modules.scoring.service import Response, ScoringService, error_response, stamp_request_ids, uses_model

HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 120.0  # an idle keep-alive connection (or a stalled upload) is closed after this
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
MAX_HEADERS = 100
PIPELINE_DEPTH = 16  # complete requests waiting on one connection before it stops reading
JOIN_LIMIT = 256 * 1024  # larger bodies leave by writelines (one writev on uvloop), not a joined copy
BACKLOG = 1024
# after a refusal the client may still be sending its body: it is read into nothing for a while, so
# the answer reaches the client (closing with unread data sends a reset, which can discard it)
LINGER_S = 2.0
LINGER_BYTES = 4 * 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

log = logging.getLogger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (a faster loop in C), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class InferencePool:
    """Daemon threads that run scoring requests off the event loop, answers posted back to it.

    Daemon threads, not a ThreadPoolExecutor: the executor's threads are joined at interpreter
    exit, so a run() that never returns would keep a stopped module alive past its drain time.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Response], Callable[[Response], None]] | None]
        self._jobs = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"inference-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], Response], done: Callable[[Response], None]) -> None:
        self._jobs.put((job, done))

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                response = job()
            except BaseException as exc:  # the service maps errors itself: this is a bug, for one request
                log.exception("scoring job failed")
                response = error_response(500, f"internal error: {type(exc).__name__}: {exc}")
            try:
                self._loop.call_soon_threadsafe(done, response)
            except RuntimeError:  # the loop is closed: the module is stopping
                return

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


class _Refuse(Exception):
    """Raised from a parser callback: answer ``response`` and read nothing more on this connection."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(eq=False)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    length: int
    keep_alive: bool
    model: bool  # runs the model: admitted, body kept, answered off the loop
    body: list[bytes] = field(default_factory=list)
    response: Response | None = None  # decided before the body: answered without reading it
    admitted: bool = False
    queued_at: float = 0.0
    linger: bool = False  # a refusal: the connection lingers after it (LINGER_S)


class HttpServer:
    """One worker's HTTP server: its connections, its admission and its inference threads."""

    def __init__(
        self,
        service: ScoringService,
        admission: Admission,
        *,
        port: int,
        threads: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.admission = admission
        self.port = port
        self.tls = tls
        self.threads = threads
        self.retry_after = retry_after_s(round(admission.max_wait_s * 1000))
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.date = http_date()
        self.pool: InferencePool | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._drained: asyncio.Event | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket) -> None:
        """Take ``sock`` (bound); it listens only from ``begin`` on."""
        loop = asyncio.get_running_loop()
        self.pool = InferencePool(loop, self.threads)
        self._drained = asyncio.Event()
        server = await loop.create_server(
            lambda: HttpConnection(self),
            sock=sock,
            backlog=BACKLOG,
            ssl=self.tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self.tls else None,
            start_serving=False,
        )
        self._servers.append(server)
        self._tick()

    async def begin(self) -> None:
        """Listen and accept: the worker is Ready (until then new connections go to the instance already
        on the port, if any, instead of being answered 503 here)."""
        for server in self._servers:
            await server.start_serving()

    def _tick(self) -> None:
        """Once a second: the Date header, and closing connections idle past IDLE_TIMEOUT_S."""
        self.date = http_date()
        idle_since = time.monotonic() - IDLE_TIMEOUT_S
        for conn in [c for c in self.connections if c.last_active < idle_since and c.idle(ignore_upload=True)]:
            conn.close()
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    def forget(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections and self._drained is not None:
            self._drained.set()

    async def shutdown(self, drain_s: float) -> bool:
        """Stop accepting, answer what is in progress (at most ``drain_s``), close. True: all answered."""
        self.stopping = True
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn.idle():
                conn.close()
        drained = True
        if self.connections and self._drained is not None:
            try:
                await asyncio.wait_for(self._drained.wait(), drain_s)
            except asyncio.TimeoutError:
                drained = False
                log.warning("%d connection(s) still busy after %.0f s; closing them", len(self.connections), drain_s)
        for conn in list(self.connections):
            conn.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        if self.pool is not None:
            self.pool.close()
        return drained


class HttpConnection(asyncio.Protocol):
    """One client connection: httptools calls the ``on_*`` methods while ``data_received`` feeds it."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.last_active = time.monotonic()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0  # of the request line and headers parsed so far (exact)
        self._header_count = 0
        self._head_fed = 0  # bytes fed while a request's head was incomplete (bounds llhttp's buffering)
        self._in_head = True
        self._current: _Request | None = None  # past its headers, body still arriving
        self._pending: deque[_Request] = deque()  # complete, waiting for their turn
        self._active: _Request | None = None  # being answered
        self._closing = False  # nothing more is read: the last answer closes the connection
        self._lost = False
        self._write_paused = False
        self._read_paused = False
        self._lingering: asyncio.TimerHandle | None = None
        self._lingered = 0

    # ---- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:  # asyncio and uvloop set it too; the answer must never wait for an ACK (Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.server.connections.add(self)
        if self.server.stopping:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.abort()
            return
        if self._closing:
            return
        self.last_active = time.monotonic()
        if self._in_head:
            self._head_fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._final(cause.response)
            else:
                log.error("HTTP callback failed: %r", cause, exc_info=cause)
                self._final(error_response(500, "internal error while reading the request"))
            return
        except httptools.HttpParserUpgrade:  # llhttp stops after a request asking to upgrade
            self._close_after_pending()
            return
        except httptools.HttpParserError as exc:
            if not self._closing:  # data after a request that said Connection: close is dropped, not answered
                self._final(error_response(400, f"malformed HTTP request: {exc}"))
            return
        if self._in_head and self._head_fed > MAX_HEAD_BYTES:
            self._final(error_response(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool | None:
        if self._lingering is not None:
            return None
        self._closing = True
        current, self._current = self._current, None  # its body can no longer arrive
        if current is not None and current.admitted:
            self.server.admission.release(current.length)
        if self.idle() or self.server.tls is not None:  # TLS cannot stay half-open
            return None  # asyncio closes the transport
        return True  # half-closed: the answers in progress still go out, then close()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        if self._lingering is not None:
            self._lingering.cancel()
        admission = self.server.admission
        for req in [self._current, *self._pending]:
            if req is not None and req.admitted:  # the active one is released when its job returns
                admission.release(req.length)
                req.admitted = False
        self._current = None
        self._pending.clear()
        self.server.forget(self)

    # ---- httptools callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._url += url  # may come in pieces
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise _Refuse(error_response(431, f"more than {MAX_HEADERS} header fields"))
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def _grow_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Refuse(error_response(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_fed = 0
        server = self.server
        method = self.parser.get_method().decode("ascii", "replace")
        path, headers = self._url.decode("latin-1"), self._headers
        refused, length = refusal(server.service, method, path, headers)
        if refused is not None:
            raise _Refuse(refused)
        keep_alive = self.parser.should_keep_alive() and not server.stopping
        req = _Request(
            method, path, headers, length, keep_alive, uses_model(method, path, server.service.score_methods)
        )
        expect = (headers.get("expect") or "").lower() == "100-continue"
        if req.model:
            why = server.admission.admit(length)
            if why is not None:
                req.response = overloaded(server.retry_after, why)
                if expect:  # the client holds its body back for the 100: answer and close
                    raise _Refuse(req.response)
            else:
                req.admitted = True
        if expect and req.response is None and length and self._active is None and not self._pending:
            assert self.transport is not None
            self.transport.write(CONTINUE)
        self._current = req

    def on_body(self, body: bytes) -> None:
        req = self._current
        if req is not None and req.model and req.response is None:
            req.body.append(body)  # other requests never read their body: it is dropped as it comes

    def on_message_complete(self) -> None:
        req, self._current = self._current, None
        self._in_head = True
        if req is None:
            return
        if not req.keep_alive:
            self._closing = True
        self._pending.append(req)
        if len(self._pending) >= PIPELINE_DEPTH and self.transport is not None and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._next()

    # ---- answering --------------------------------------------------------------------------------------

    def idle(self, ignore_upload: bool = False) -> bool:
        """Nothing to answer (``ignore_upload``: a request whose body stalls counts as nothing)."""
        return self._active is None and not self._pending and (ignore_upload or self._current is None)

    def _final(self, response: Response) -> None:
        """Answer ``response`` after what is already queued, then close; read nothing more."""
        self._closing = True
        current, self._current = self._current, None
        if current is not None and current.admitted:
            self.server.admission.release(current.length)
        if self.transport is not None and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._pending.append(_Request("", "", {}, 0, keep_alive=False, model=False, response=response, linger=True))
        self._next()

    def _close_after_pending(self) -> None:
        """After a request asking to upgrade: it is answered as plain HTTP (no upgrade is
        supported), then the connection closes; what the client sent after it is not HTTP."""
        self._closing = True
        if self._pending:
            self._pending[-1].keep_alive = False
        elif self._active is not None:
            self._active.keep_alive = False
        else:  # already answered
            self.close()

    def _next(self) -> None:
        if self._active is not None or self._write_paused or not self._pending or self._lost:
            return
        req = self._active = self._pending.popleft()
        if self._read_paused and not self._closing and len(self._pending) < PIPELINE_DEPTH // 2:
            self._read_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        server = self.server
        if req.response is not None:
            self._answer(req.response)
        elif req.model:
            assert server.pool is not None
            req.queued_at = time.monotonic()
            server.pool.submit(lambda: self._score(req), self._answer)
        else:
            self._answer(server.service.handle(req.method, req.path, req.headers, b"", server.port))

    def _score(self, req: _Request) -> Response:
        """On an inference thread: the queue-wait check, the body's decoding, the service."""
        server = self.server
        if server.admission.expired(req.queued_at, time.monotonic()):
            waited = f"it waited over {server.admission.max_wait_s * 1000:.0f} ms for an inference thread"
            return overloaded(server.retry_after, waited)
        raw = req.body[0] if len(req.body) == 1 else b"".join(req.body)
        req.body = []
        service = server.service
        try:
            body = decode_body(raw, header(req.headers, "content-encoding"), service.config.max_request_bytes)
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        return service.handle(req.method, req.path, req.headers, body, server.port)

    def _answer(self, response: Response) -> None:
        req, self._active = self._active, None
        assert req is not None
        if req.admitted:
            self.server.admission.release(req.length)
            req.admitted = False
        if self._lost or self.transport is None:
            return
        stamp_request_ids(response, req.headers)
        stopping = self.server.stopping
        close = not req.keep_alive or (stopping and not self._pending and self._current is None)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d (worker %d)", req.method, req.path, response.status, os.getpid())
        head_only = req.method == "HEAD"
        if head_only or len(response.body) <= JOIN_LIMIT:
            self.transport.write(encode_response(response, close=close, head_only=head_only, date=self.server.date))
        else:  # a large body: no joined copy of it
            self.transport.writelines([encode_head(response, close=close, date=self.server.date), response.body])
        if close:
            if req.linger:
                self._linger()
            else:
                self.close()
            return
        if self._closing and self.idle():  # the client half-closed and has its answers
            self.close()
            return
        self._next()

    def _linger(self) -> None:
        """Half-close after a refusal and drop what still arrives, for a while (LINGER_S)."""
        transport = self.transport
        assert transport is not None
        if not transport.can_write_eof():  # TLS: no half-close
            self.close()
            return
        transport.write_eof()
        self._lingering = asyncio.get_running_loop().call_later(LINGER_S, self.abort)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()
