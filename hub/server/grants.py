"""Artifact download grants: the blob URLs in a device's manifest name the device and carry a MAC.

A device fetches its artifacts with plain HTTP GETs (Range, resume) of the URLs its signed manifest
gives it. Each URL is ``/api/v1/blobs/<digest>?device=<id>&grant=<mac>``, the MAC (HMAC-SHA256 under
a key only the hub holds) binding the device id to that one digest. So a device proves itself with
what only it was given: the broker's ACL lets no other client read its manifest. That works alike
for certificate and password identities, needs no key or clock on the device, and nothing new in
the agent's downloader.

A grant alone is not enough: on every request the hub also checks that the device is registered
(not revoked, not deleted) and that the digest is in its current desired state (auth.py), so a
leaked URL opens one blob of one device's current deployment, and nothing once that changes.

The key is a file next to the manifest key; replacing it changes every URL, so the next reconcile
republishes every device's manifest (the URLs are part of what it compares).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from edgefleet.protocol.files import write_atomic

DEVICE_PARAM = "device"
GRANT_PARAM = "grant"
_CONTEXT = b"edgefleet-blob-grant/1\0"
_KEY_BYTES = 32


class BlobGrants:
    """Makes and checks the grants in blob URLs; pure but for ``load_or_create``."""

    def __init__(self, key: bytes, base_url: str) -> None:
        if len(key) < _KEY_BYTES:
            raise ValueError(f"a blob grant key needs at least {_KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.base_url = base_url.rstrip("/")

    @classmethod
    def load_or_create(cls, path: Path, base_url: str) -> BlobGrants:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, base64.b64encode(os.urandom(_KEY_BYTES)) + b"\n", mode=0o600)
        return cls(base64.b64decode(path.read_bytes().strip(), validate=True), base_url)

    def grant(self, device_id: str, digest: str) -> str:
        mac = hmac.new(self._key, _CONTEXT + device_id.encode() + b"\0" + digest.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def url(self, device_id: str, digest: str) -> str:
        query = urlencode({DEVICE_PARAM: device_id, GRANT_PARAM: self.grant(device_id, digest)})
        return f"{self.base_url}/api/v1/blobs/{digest}?{query}"

    def valid(self, device_id: str, digest: str, grant: str) -> bool:
        return hmac.compare_digest(self.grant(device_id, digest).encode(), grant.encode())


def desired_digests(modules_wire: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The artifact digests a device's stored desired state (render.modules_wire) names."""
    return frozenset(
        str(artifact.get("digest"))
        for module in modules_wire
        for artifact in module.get("artifacts") or ()
        if isinstance(artifact, Mapping)
    )
