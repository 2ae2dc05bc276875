"""The hub public key the agent verifies manifests with: provisioned, pinned, or pinned on first use
only against a fingerprint the operator gave.

In order:

1. configured: the bootstrap bundle's key (``--bootstrap``), or ``--hub-key`` / ``hub_public_key``;
2. pinned: ``<data-dir>/hub-key.json``, written by an earlier start;
3. trust on first use, only with ``--hub-key-fingerprint sha256:<hex>``: the agent asks
   ``GET <hub>/api/v1/hub`` once, and pins the answer only if its fingerprint is the one given
   (``edgefleet hub info`` or ``GET /api/v1/hub`` on a trusted path shows it). A different key is
   refused: whoever answered is not the hub the operator meant. An https:// hub's certificate is
   verified first (``hubtls``: ``hub_ca_file``, else the system's CAs).

Without any of these the agent refuses to start: a key fetched from whoever answers the URL would
let that party sign manifests.

Key rotation: a manifest signed with the current key may announce the hub's next key
(``nextHubKey``). The agent then accepts manifests signed with either, and once one signed with the
next key is accepted, only that one: the pinned file records the switch (``rotatedFrom``), so the
key in the bootstrap bundle, now rotated away from, gives way to the pinned one on later starts.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgefleet.agent.errors import HubKeyUnavailable, SettingsError
from edgefleet.agent.hubtls import HubTrust
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
    trust: HubTrust | None = None,
) -> str:
    """Return the base64 hub key: configured > pinned > fetched, matching ``fingerprint``, and pinned.

    ``trust``: the CA an https:// hub's certificate must chain to (``hubtls``).

    Raises SettingsError when no source is allowed or the fetched key does not match (permanent),
    HubKeyUnavailable when the hub cannot be asked yet (tried again)."""
    pinned_path = data_dir / PINNED_FILE
    record = _pinned(pinned_path) if pinned_path.exists() else None
    if configured:
        if record is not None and configured in record.get("rotatedFrom", []):
            return _checked(record["publicKey"], f"{pinned_path} (rotated from the configured key)")
        return _checked(configured, "the agent settings (hub_public_key or the bootstrap bundle)")
    if record is not None:
        return _checked(record["publicKey"], str(pinned_path))
    if fingerprint is None:
        raise SettingsError(
            "no hub key: start the agent with --bootstrap FILE (from `edgefleet device register`), --hub-key KEY, "
            "or --hub-key-fingerprint sha256:... to pin the hub's key on first use"
        )
    expected = normalize_fingerprint(fingerprint)
    url = f"{hub_url}/api/v1/hub"
    trust = trust or HubTrust()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=trust.context) as resp:
            answer = json.loads(resp.read())
        public = str(answer["publicKey"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        why = trust.failure(exc) or exc
        raise HubKeyUnavailable(f"no hub key configured or pinned, and {url} did not provide one: {why}") from exc
    raw = public_key_raw(_checked(public, url))
    offered = key_fingerprint(raw)
    if offered != expected:
        raise SettingsError(
            f"{url} offers a hub key with fingerprint {offered}, not the {expected} given "
            "(--hub-key-fingerprint): not pinned; check which hub answers there"
        )
    _write(pinned_path, {"publicKey": public, "keyId": key_id(base64.b64decode(public)), "source": url})
    log.warning("pinned hub key %s fetched from %s: its fingerprint matches the one given", key_id(raw), url)
    return public


def _pinned(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        str(record["publicKey"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(
            f"pinned hub key {path} is unreadable ({exc}); delete it to pin again, or set hub_public_key"
        ) from exc
    if not isinstance(record, dict):
        raise SettingsError(f"pinned hub key {path} is unreadable; delete it to pin again, or set hub_public_key")
    return record


def _write(path: Path, record: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(record).encode())


def announced_key(data_dir: Path, current: str) -> str | None:
    """The next hub key a manifest signed with ``current`` announced, if any."""
    path = data_dir / PINNED_FILE
    if not path.exists():
        return None
    record = _pinned(path)
    nxt = record.get("next")
    return str(nxt) if record.get("publicKey") == current and nxt else None


def pin_announced(data_dir: Path, current: str, announced: str, generation: int) -> None:
    """A manifest signed with ``current`` announced the hub's next key: trust both until it is used."""
    public_key_raw(announced)  # ValueError: not a key
    path = data_dir / PINNED_FILE
    record = _pinned(path) if path.exists() else {}
    if record.get("publicKey") != current:
        record = {"publicKey": current, "keyId": key_id(public_key_raw(current)), "rotatedFrom": []}
    record["next"] = announced
    record["source"] = f"announced in generation {generation}"
    _write(path, record)
    log.warning(
        "hub key rotation: generation %d announces the next hub key %s", generation, key_id(public_key_raw(announced))
    )


def pin_rotated(data_dir: Path, old: str, new: str, generation: int) -> None:
    """A manifest signed with the announced key was accepted: it is the hub key now, ``old`` never again."""
    path = data_dir / PINNED_FILE
    record = _pinned(path) if path.exists() else {}
    rotated_from = [k for k in record.get("rotatedFrom", []) if k != new] + [old]
    _write(
        path,
        {
            "publicKey": new,
            "keyId": key_id(public_key_raw(new)),
            "rotatedFrom": rotated_from,
            "source": f"rotated in generation {generation}",
        },
    )
    log.warning(
        "hub key rotation: now trusting only hub key %s (from generation %d)", key_id(public_key_raw(new)), generation
    )
