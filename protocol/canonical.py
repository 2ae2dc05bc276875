"""Canonical JSON: the one byte form that signatures and spec hashes are computed over.

Keys sorted, no insignificant whitespace, UTF-8, no NaN/Infinity. Both sides canonicalize the
*received* JSON object, never a re-serialized model, so a field added by a newer hub cannot make
an older agent compute different bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def content_hash(obj: Any) -> str:
    """Short, stable hash of a JSON-able object (used to tell whether a module spec changed)."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()[:16]
