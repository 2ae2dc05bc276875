"""The former transport, kept selectable (``--transport threading``) as the peer of the asyncio one
in ``bench/scoring_http.py``: a threading stdlib ``http.server``, one thread per connection.

It answers as it always did: headers and body leave in two writes (on a kept-alive connection the
second waits for the client's delayed ACK, ~40 ms), no worker processes, no back-pressure. The
refusals from headers alone (``http.refusal``) and the TLS handshake on the connection's own
thread under a timeout are the same as the asyncio transport's.
"""

from __future__ import annotations

import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgefleet.modules.scoring.errors import RequestError
from edgefleet.modules.scoring.http import decode_body, refusal
from edgefleet.modules.scoring.service import Response, ScoringService, error_response, stamp_request_ids

HANDSHAKE_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


class ScoringHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    server_version = "edgefleet-scoring"
    timeout = 120  # an idle keep-alive connection does not pin a thread forever
    server: ScoringHTTPServer
    _length = 0  # the Content-Length of the request being served, once accepted

    def _refusal(self) -> Response | None:
        """The answer to a request refused from its headers alone, else None; records the
        announced length in ``_length``."""
        refused, self._length = refusal(self.server.service, self.command, self.path, dict(self.headers.items()))
        return refused

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
        headers = {k.lower(): v for k, v in self.headers.items()}  # as the asyncio transport gives them
        response = self.server.service.handle(self.command, self.path, headers, body, self.server.server_address[1])
        self._send(stamp_request_ids(response, headers))

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

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

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
