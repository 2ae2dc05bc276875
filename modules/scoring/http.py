"""HTTP transport: a threading stdlib server that moves bytes between sockets and ScoringService.

The standard library rather than an ASGI stack: it imports in ~50 ms (fastapi + uvicorn take
~400 ms of the agent's 1.5 s manifest -> Healthy budget), handles raw binary bodies directly,
and HTTP/1.1 keep-alive serves tritonclient's connection pool. One thread per connection; models
are thread-safe and entry scripts are serialised by EntryScript.

Before a byte of a body is read, a request is refused when it carries no valid key (401), is
chunked (411) or announces a Content-Length over ``--max-request-bytes`` (413); the connection is
then closed, so the unread body is never read. ``Expect: 100-continue`` gets the refusal instead of
the 100. With TLS the handshake runs on the connection's own thread under a timeout, so a client
that connects and never speaks holds one thread, not the accept loop.
"""

from __future__ import annotations

import logging
import socket
import ssl
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgefleet.modules.scoring.errors import BadRequest, LengthRequired, PayloadTooLarge, RequestError
from edgefleet.modules.scoring.service import Response, ScoringService, error_response

HANDSHAKE_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)

_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo gzip/deflate request compression (tritonclient's optional request_compression_algorithm)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding not in _DECOMPRESSORS:
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(_DECOMPRESSORS[encoding])
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"request body is not valid {encoding}: {exc}") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    return body


class ScoringHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    server_version = "edgefleet-scoring"
    timeout = 120  # an idle keep-alive connection does not pin a thread forever
    server: ScoringHTTPServer
    _length = 0  # the Content-Length of the request being served, once accepted

    def _refusal(self) -> Response | None:
        """The answer to a request refused from its headers alone (no valid key, chunked, too
        long), else None; records the announced length in ``_length``."""
        service = self.server.service
        refused = service.authorize(self.command, self.path, dict(self.headers.items()))
        if refused is not None:
            return refused
        limit = service.config.max_request_bytes
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise LengthRequired("chunked request bodies are not supported; send Content-Length")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise BadRequest("Content-Length is not an integer") from None
            if length < 0:
                raise BadRequest("Content-Length is negative")
            if length > limit:
                raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        self._length = length
        return None

    def _refuse(self, response: Response) -> None:
        if self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # the unread body would corrupt the next request on this connection
        self._send(response)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse from the headers before the client sends the body."""
        refused = self._refusal()
        if refused is not None:
            self.close_connection = True
            self._refuse(refused)
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes:
        raw = self.rfile.read(self._length) if self._length else b""
        return decode_body(raw, self.headers.get("Content-Encoding"), self.server.service.config.max_request_bytes)

    def _dispatch(self) -> None:
        refused = self._refusal()
        if refused is not None:
            self._refuse(refused)
            return
        try:
            body = self._read_body()
        except RequestError as exc:
            self._send(error_response(exc.status, exc.message))
            return
        response = self.server.service.handle(
            self.command, self.path, dict(self.headers.items()), body, self.server.server_address[1]
        )
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ScoringHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # open keep-alive connections must not block process exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: ScoringService, tls: ssl.SSLContext | None = None) -> None:
        self.service = service
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ScoringHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """On the connection's thread: the TLS handshake (if any), then the HTTP exchange."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # not TLS, a bad handshake, or silence: this connection only
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            request.close()
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()
