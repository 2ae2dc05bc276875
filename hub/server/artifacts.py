"""Content-addressed blob store on disk: a blob's name is the sha256 of its bytes.

Uploads are written to a temporary file while hashing, fsynced, and renamed into place only when
the digest matches the one the client named, so a reader never sees a partial or wrong blob.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgefleet.hub.errors import DigestMismatch, InvalidRequest, NotFound, RangeNotSatisfiable
from edgefleet.protocol.digests import format_digest, is_digest, parse_digest

log = logging.getLogger(__name__)
CHUNK = 1 << 16


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str, size: int) -> ByteRange | None:
    """One ``bytes=`` range (RFC 9110) clipped to ``size``; None means "send the whole blob".

    Multiple ranges and other units are answered with the whole blob, which RFC 9110 permits.
    """
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            if n <= 0 or size == 0:
                raise RangeNotSatisfiable(header, size)
            return ByteRange(max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    if start < 0 or end < start:
        return None
    return ByteRange(start, min(end, size - 1))


def check_digest(digest: str) -> str:
    try:
        parse_digest(digest)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return digest


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        hex_digest = parse_digest(check_digest(digest))
        return self.root / "sha256" / hex_digest[:2] / hex_digest

    def exists(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the artifact store; upload it first") from None

    async def put_stream(self, digest: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the streamed bytes under ``digest``; DigestMismatch (nothing stored) when they differ."""
        target = self.path(digest)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="upload-")
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            actual = format_digest(h.hexdigest())
            if actual != digest:
                raise DigestMismatch(expected=digest, actual=actual)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        log.info("stored blob %s (%d bytes)", digest, size)
        return size

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest (used by tests and tools on the hub host)."""
        digest = format_digest(hashlib.sha256(data).hexdigest())
        target = self.path(digest)
        if not target.exists():
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
        return digest

    def read(self, digest: str, byte_range: ByteRange | None = None) -> Iterator[bytes]:
        path = self.path(digest)
        with open(path, "rb") as f:
            remaining = byte_range.length if byte_range else None
            if byte_range:
                f.seek(byte_range.start)
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
