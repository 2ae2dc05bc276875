"""Content digests: artifacts are named and trusted only by ``sha256:<hex>``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


def format_digest(hex_digest: str) -> str:
    return DIGEST_PREFIX + hex_digest


def parse_digest(digest: str) -> str:
    """Return the hex part of ``sha256:<hex>``; ValueError names the bad value."""
    if not _DIGEST_RE.fullmatch(digest):  # not match: "$" would let a final newline through
        raise ValueError(f"not a sha256 digest: {digest!r} (expected 'sha256:' and 64 lowercase hex digits)")
    return digest[len(DIGEST_PREFIX) :]


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(value))


def sha256_bytes(data: bytes) -> str:
    return format_digest(hashlib.sha256(data).hexdigest())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return format_digest(h.hexdigest())
