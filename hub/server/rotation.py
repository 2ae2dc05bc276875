"""Rotating the hub's manifest key: the next key is announced in manifests signed with the current one.

    <data-dir>/hub_key.pem        the current key (signs every manifest)
    <data-dir>/hub_key.next.pem   the next key, while a rotation runs (0600)
    <data-dir>/hub_key.old.pem    the key before the last rotation (0600, kept for the record)

1. ``start``: the next key is made; every registered device gets a new generation, signed with the
   current key, that carries ``nextHubKey`` (idle devices an empty one). A device that accepts it
   trusts the next key too.
2. A device has **acknowledged** once it reports a generation at or past the announcing one.
3. ``finish``: when every registered device acknowledged (or ``force``: the rest must be
   re-provisioned), the next key becomes the current one and every device gets a new generation
   signed with it; agents then trust only the new key. Bootstrap bundles carry the new key.

Who may: admin (API routes under /hub/key/rotation). ``rotation_status`` is pure.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edgefleet.hub.server.store import DesiredRecord, DeviceRecord
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.signing import HubKey

log = logging.getLogger(__name__)


class HubKeys:
    """The hub's manifest keys: the current one and, during a rotation, the next one. Shared by the
    controller (signs), identities (bundles) and the API (``GET /hub``)."""

    def __init__(self, current: HubKey, next_key: HubKey | None = None) -> None:
        self.current = current
        self.next = next_key

    @classmethod
    def load_or_create(cls, key_path: Path) -> HubKeys:
        next_path = next_key_path(key_path)
        return cls(HubKey.load_or_create(key_path), HubKey.load_or_create(next_path) if next_path.exists() else None)

    @property
    def announced(self) -> str | None:
        """The base64 key every manifest announces now (None: no rotation runs)."""
        return self.next.public_key_b64 if self.next else None


def next_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.stem + ".next.pem")


def old_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.stem + ".old.pem")


def trust_of(payload: str) -> tuple[str | None, str | None]:
    """(key id it is signed with, key it announces) of a published manifest."""
    try:
        body = json.loads(payload)
        return body.get("keyId"), (body.get("manifest") or {}).get("nextHubKey")
    except (ValueError, AttributeError):
        return None, None


@dataclass(frozen=True)
class DeviceAck:
    device_id: str
    acknowledged: bool
    reason: str


def rotation_status(
    devices: list[DeviceRecord], desired: dict[str, DesiredRecord], announced: str | None
) -> list[DeviceAck]:
    """Which registered devices have accepted a manifest announcing ``announced`` (pure)."""
    out = []
    for d in devices:
        if d.status != "registered":
            continue
        record = desired.get(d.device_id)
        reported = d.last_report.generation if d.last_report else None
        if record is None or trust_of(record.payload)[1] != announced:
            out.append(DeviceAck(d.device_id, False, "the announcement is not published to it yet"))
        elif reported is None or reported < record.generation:
            at = "has not reported yet" if reported is None else f"reports generation {reported}"
            out.append(DeviceAck(d.device_id, False, f"{at}; the announcement is generation {record.generation}"))
        else:
            out.append(DeviceAck(d.device_id, True, f"accepted generation {record.generation}"))
    return out


def start(keys: HubKeys, key_path: Path) -> bool:
    """Make the next key (0600) unless a rotation runs; True when it was made."""
    if keys.next is not None:
        return False
    keys.next = HubKey.load_or_create(next_key_path(key_path))
    log.warning("hub key rotation started: announcing key %s", keys.next.key_id)
    return True


def finish(keys: HubKeys, key_path: Path) -> HubKey:
    """The next key becomes the current one, on disk and in ``keys``; returns the old key."""
    assert keys.next is not None
    old, new = keys.current, keys.next
    os.replace(key_path, old_key_path(key_path))
    write_atomic(key_path, next_key_path(key_path).read_bytes(), mode=0o600)
    next_key_path(key_path).unlink()
    keys.current, keys.next = new, None
    log.warning("hub key rotation finished: manifests are signed with key %s now (was %s)", new.key_id, old.key_id)
    return old
