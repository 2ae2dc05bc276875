"""The hub public key the agent verifies manifests with: configured, or pinned on first use.

Trust on first use: without a configured key, the agent asks ``GET <hub>/api/v1/hub`` once and
pins the answer in its data directory; every later start uses the pinned key and never asks again,
so a hub impersonated later cannot swap it. The first fetch is logged as a warning because it is
only as trustworthy as the network at that moment — provision the key for production devices.
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
from edgefleet.protocol.signing import key_id, public_key_raw

log = logging.getLogger(__name__)

PINNED_FILE = "hub-key.json"


def _checked(public_key_b64: str, where: str) -> str:
    try:
        public_key_raw(public_key_b64)
    except ValueError as exc:
        raise SettingsError(f"hub public key from {where} is unusable: {exc}") from exc
    return public_key_b64


def resolve_hub_key(configured: str | None, data_dir: Path, hub_url: str, timeout_s: float = 10.0) -> str:
    """Return the base64 hub key: configured > pinned > fetched-and-pinned. Raises HubKeyUnavailable."""
    pinned_path = data_dir / PINNED_FILE
    if configured:
        return _checked(configured, "the agent settings (hub_public_key)")
    if pinned_path.exists():
        try:
            pinned = json.loads(pinned_path.read_text())["publicKey"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(
                f"pinned hub key {pinned_path} is unreadable ({exc}); delete it to pin again, or set hub_public_key"
            ) from exc
        return _checked(pinned, str(pinned_path))
    url = f"{hub_url}/api/v1/hub"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
        public = str(answer["publicKey"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise HubKeyUnavailable(f"no hub key configured or pinned, and {url} did not provide one: {exc}") from exc
    _checked(public, url)
    write_atomic(
        pinned_path,
        json.dumps({"publicKey": public, "keyId": key_id(base64.b64decode(public)), "source": url}).encode(),
    )
    log.warning(
        "pinned hub key %s fetched from %s (trust on first use); provision hub_public_key to avoid this",
        key_id(base64.b64decode(public)),
        url,
    )
    return public
