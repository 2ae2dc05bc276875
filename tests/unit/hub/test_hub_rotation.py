"""Which devices acknowledged the next hub key, and the key files through a rotation."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edgefleet.hub.server.rotation import HubKeys, finish, next_key_path, old_key_path, rotation_status, start
from edgefleet.hub.server.store import DesiredRecord, DeviceRecord
from edgefleet.protocol.models import ReportedState

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
NEXT = "bmV4dA=="


def _device(device_id: str, reported: int | None, status: str = "registered") -> DeviceRecord:
    report = ReportedState(device_id=device_id, generation=reported) if reported is not None else None
    return DeviceRecord(device_id=device_id, registered_at=T0, last_report=report, status=status)  # type: ignore[arg-type]


def _desired(device_id: str, generation: int, announced: str | None) -> DesiredRecord:
    manifest = {"generation": generation, **({"nextHubKey": announced} if announced else {})}
    payload = json.dumps({"manifest": manifest, "keyId": "k", "signature": "s"})
    return DesiredRecord(device_id=device_id, generation=generation, modules=[], payload=payload, published_at=T0)


def test_acknowledged_once_the_device_reports_the_announcing_generation() -> None:
    devices = [_device("a", 5), _device("b", 4), _device("c", None), _device("d", 9), _device("r", 1, "revoked")]
    desired = {"a": _desired("a", 5, NEXT), "b": _desired("b", 5, NEXT), "c": _desired("c", 2, NEXT)}
    desired["d"] = _desired("d", 9, None)  # not re-published with the announcement yet
    acks = {a.device_id: (a.acknowledged, a.reason) for a in rotation_status(devices, desired, NEXT)}
    assert acks == {
        "a": (True, "accepted generation 5"),
        "b": (False, "reports generation 4; the announcement is generation 5"),
        "c": (False, "has not reported yet; the announcement is generation 2"),
        "d": (False, "the announcement is not published to it yet"),
    }  # revoked devices are not waited for


def test_key_files_through_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "hub_key.pem"
    keys = HubKeys.load_or_create(path)
    first = keys.current
    assert keys.next is None and keys.announced is None
    assert start(keys, path) and not start(keys, path)  # one rotation at a time
    assert keys.next is not None and next_key_path(path).stat().st_mode & 0o777 == 0o600
    assert HubKeys.load_or_create(path).announced == keys.announced  # a restarted hub goes on announcing it
    announced = keys.next
    finish(keys, path)
    assert keys.current.public_key_b64 == announced.public_key_b64 and keys.next is None
    assert not next_key_path(path).exists() and old_key_path(path).stat().st_mode & 0o777 == 0o600
    reloaded = HubKeys.load_or_create(path)
    assert reloaded.current.public_key_b64 == announced.public_key_b64 != first.public_key_b64
