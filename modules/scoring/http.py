"""HTTP pieces both transports share, as pure functions: what a request's headers alone decide, the
decoding of compressed bodies, and the bytes of a response.

Before a byte of a body is read, a request is refused when it carries no valid key (401), is
chunked (411) or announces a Content-Length over ``--max-request-bytes`` (413); the transport then
closes the connection, so the unread body is never read. ``Expect: 100-continue`` gets the refusal
instead of the 100.

A response is one buffer, status line, headers and body together (``encode_response``): written
in two pieces, the second waits on the client's delayed ACK (Nagle), ~40 ms per kept-alive request.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus

from edgefleet.modules.scoring.errors import BadRequest, LengthRequired, PayloadTooLarge, RequestError
from edgefleet.modules.scoring.service import Response, ScoringService, error_response

SERVER_HEADER = b"Server: edgefleet-scoring\r\n"
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


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


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (the asyncio transport's names are lower case already)."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)


def refusal(service: ScoringService, method: str, path: str, headers: Mapping[str, str]) -> tuple[Response | None, int]:
    """(the answer to a request refused from its headers alone, or None; the announced body length)."""
    refused = service.authorize(method, path, headers)
    if refused is not None:
        return refused, 0
    limit = service.config.max_request_bytes
    try:
        if (header(headers, "transfer-encoding") or "").lower().strip() == "chunked":
            raise LengthRequired("chunked request bodies are not supported; send Content-Length")
        try:
            length = int(header(headers, "content-length") or 0)
        except ValueError:
            raise BadRequest("Content-Length is not an integer") from None
        if length < 0:
            raise BadRequest("Content-Length is negative")
        if length > limit:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
    except RequestError as exc:
        return error_response(exc.status, exc.message), 0
    return None, length


def overloaded(retry_after_s: int, why: str) -> Response:
    """503 for a request the back-pressure turned away before the model ran."""
    response = error_response(503, f"the server is busy: {why}; retry after {retry_after_s} s")
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def retry_after_s(max_queue_wait_ms: int) -> int:
    """What Retry-After says: about one queue wait, in whole seconds (at least 1)."""
    return max(1, math.ceil(max_queue_wait_ms / 1000))


def http_date(now: float | None = None) -> bytes:
    return f"Date: {formatdate(now, usegmt=True)}\r\n".encode()


def encode_head(response: Response, *, close: bool, date: bytes = b"") -> bytes:
    """Status line and headers of ``response`` (Content-Length always: keep-alive needs it)."""
    status = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} Unknown\r\n".encode()
    parts = [
        status,
        SERVER_HEADER,
        date,
        b"Content-Type: ",
        response.content_type.encode("latin-1"),
        b"\r\nContent-Length: ",
        str(len(response.body)).encode(),
        b"\r\n",
    ]
    for key, value in response.headers.items():
        parts.append(f"{key}: {value}\r\n".encode("latin-1"))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_response(response: Response, *, close: bool, head_only: bool = False, date: bytes = b"") -> bytes:
    """The whole response as one buffer (HEAD: the headers of the GET, no body)."""
    head = encode_head(response, close=close, date=date)
    return head if head_only or not response.body else head + response.body
