"""HTTP transport: a threading stdlib server that moves bytes between sockets and ScoringService.

The standard library rather than an ASGI stack: it imports in ~50 ms (fastapi + uvicorn take
~400 ms of the agent's 1.5 s manifest -> Healthy budget), handles raw binary bodies directly,
and HTTP/1.1 keep-alive serves tritonclient's connection pool. One thread per connection; models
are thread-safe and entry scripts are serialised by EntryScript.
"""

from __future__ import annotations

import logging
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgefleet.modules.scoring.errors import BadRequest, LengthRequired, PayloadTooLarge, RequestError
from edgefleet.modules.scoring.service import Response, ScoringService, error_response

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

    def _read_body(self) -> bytes:
        limit = self.server.service.config.max_request_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise LengthRequired("chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise BadRequest("Content-Length is not an integer") from None
        if length > limit:
            self.close_connection = True  # the unread body would corrupt the next request on this connection
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        raw = self.rfile.read(length) if length else b""
        return decode_body(raw, self.headers.get("Content-Encoding"), limit)

    def _dispatch(self) -> None:
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

    def __init__(self, address: tuple[str, int], service: ScoringService) -> None:
        self.service = service
        super().__init__(address, ScoringHandler)
