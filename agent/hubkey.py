"""The hub public key the agent verifies manifests with: provisioned, pinned, or pinned on first use
only against a fingerprint the operator gave.

In order:

1. configured: the bootstrap bundle's key (``--bootstrap``), or ``--hub-key`` / ``hub_public_key``;
2. pinned: ``<data-dir>/hub-key.json``, written by an earlier start;
3. trust on first use, only with ``--hub-key-fingerprint sha256:<hex>``: the agent asks
   ``GET <hub>/api/v1/hub`` once, and pins the answer only if its fingerprint is the one given
   (``edgefleet hub info`` or ``GET /api/v1/hub`` on a trusted path shows it). A different key is
   refused: whoever answered is not the hub the operator meant.

Without any of these the agent refuses to start: a key fetched from whoever answers the URL would
let that party sign manifests.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from edgefleet.agent.errors import HubKeyUnavailable, SettingsError
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.signing import key_fingerprint, key_id, public_key_raw

log = logging.getLogger(__name__)

PINNED_FILE = "hub-key.json"


def _checked(public_key_b64: str, where: str) -> str:
    try:
        public_key_raw(public_key_b64)
    except ValueError as exc:
        raise SettingsError(f"hub public key from {where} is unusable: {exc}") from exc
    return public_key_b64


def normalize_fingerprint(text: str) -> str:
    """``sha256:<64 lowercase hex>``; accepts the bare hex and upper case. SettingsError otherwise."""
    value = text.strip().lower()
    value = value if value.startswith("sha256:") else "sha256:" + value
    hex_part = value[len("sha256:") :]
    if len(hex_part) != 64 or any(c not in "0123456789abcdef" for c in hex_part):
        raise SettingsError(
            f"hub key fingerprint {text!r}: expected sha256:<64 hex digits> (keyFingerprint of GET /api/v1/hub)"
        )
    return value


def resolve_hub_key(
    configured: str | None,
    data_dir: Path,
    hub_url: str,
    timeout_s: float = 10.0,
    fingerprint: str | None = None,
) -> str:
    """Return the base64 hub key: configured > pinned > fetched, matching ``fingerprint``, and pinned.

    Raises SettingsError when no source is allowed or the fetched key does not match (permanent),
    HubKeyUnavailable when the hub cannot be asked yet (tried again)."""
    pinned_path = data_dir / PINNED_FILE
    if configured:
        return _checked(configured, "the agent settings (hub_public_key or the bootstrap bundle)")
    if pinned_path.exists():
        try:
            pinned = json.loads(pinned_path.read_text())["publicKey"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(
                f"pinned hub key {pinned_path} is unreadable ({exc}); delete it to pin again, or set hub_public_key"
            ) from exc
        return _checked(pinned, str(pinned_path))
    if fingerprint is None:
        raise SettingsError(
            "no hub key: start the agent with --bootstrap FILE (from `edgefleet device register`), --hub-key KEY, "
            "or --hub-key-fingerprint sha256:... to pin the hub's key on first use"
        )
    expected = normalize_fingerprint(fingerprint)
    url = f"{hub_url}/api/v1/hub"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
        public = str(answer["publicKey"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise HubKeyUnavailable(f"no hub key configured or pinned, and {url} did not provide one: {exc}") from exc
    raw = public_key_raw(_checked(public, url))
    offered = key_fingerprint(raw)
    if offered != expected:
        raise SettingsError(
            f"{url} offers a hub key with fingerprint {offered}, not the {expected} given "
            "(--hub-key-fingerprint): not pinned; check which hub answers there"
        )
    write_atomic(
        pinned_path,
        json.dumps({"publicKey": public, "keyId": key_id(base64.b64decode(public)), "source": url}).encode(),
    )
    log.warning("pinned hub key %s fetched from %s: its fingerprint matches the one given", key_id(raw), url)
    return public
