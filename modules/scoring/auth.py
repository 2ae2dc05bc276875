"""Scoring keys (Azure ML's ``authEnabled``): which requests need one, and whether one carries it.

Pure, so the rules are tested without sockets. A request carries a key as ``Authorization: Bearer
<key>``; either configured key is accepted (primary and secondary: one is rotated while clients
still use the other). Only the health routes the agent probes (``protocol.module.OPEN_ROUTES``)
are open; every other route, unknown ones included, needs a key, so a route added later is closed
until it is listed.

Keys are compared through their SHA-256 digests with ``hmac.compare_digest``, and against every
configured key without stopping at the first match: the time taken tells neither how much of a
guess was right nor which key matched (nor a key's length).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from edgefleet.protocol.module import OPEN_ROUTES

OPEN_METHODS = frozenset({"GET", "HEAD"})


def route_path(path: str) -> str:
    """The path a request is routed by: no query, no trailing slash (the root stays ``/``)."""
    return path.split("?", 1)[0].rstrip("/") or "/"


def needs_key(method: str, path: str) -> bool:
    return not (method in OPEN_METHODS and route_path(path) in OPEN_ROUTES)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), else None."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_matches(presented: str | None, keys: Sequence[str]) -> bool:
    if presented is None:
        return False
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(digest, hashlib.sha256(key.encode()).digest())
    return matched


def refusal(method: str, path: str, headers: Mapping[str, str], keys: Sequence[str]) -> str | None:
    """Why the request is refused (answered 401), or None when it may go on. No keys: all may."""
    if not keys or not needs_key(method, path):
        return None
    presented = presented_key(headers)
    if presented is None:
        return "this endpoint needs a key: send the header Authorization: Bearer <key> (edgefleet service keys NAME)"
    if not key_matches(presented, keys):
        return "the key is not valid for this endpoint (it may have been regenerated: edgefleet service keys NAME)"
    return None
