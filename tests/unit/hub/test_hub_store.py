from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgefleet.hub.configs import parse_deployment_config
from edgefleet.hub.errors import Conflict, SettingsError, StoreError
from edgefleet.hub.schemas import Role
from edgefleet.hub.server.store import (
    CredentialRecord,
    DesiredRecord,
    FileEntry,
    ServiceRecord,
    SqliteStore,
    TokenRecord,
    open_store,
)
from edgefleet.hub.server.store.sqlite import MIGRATIONS
from edgefleet.protocol.models import (
    AcceleratorInfo,
    DeviceCapabilities,
    ModelRef,
    ModuleState,
    ModuleStatus,
    ReportedState,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
F1 = FileEntry(path="m.onnx", digest="sha256:" + "a" * 64, size=3)
TOKEN = TokenRecord(id="0123456789ab", name="ci", role=Role.DEPLOY, secret_hash="f" * 64, created_at=T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "hub.db")
    yield s
    s.close()


def test_model_versions_auto_increment_per_name_and_are_never_reused(store: SqliteStore) -> None:
    assert store.create_model("digits", [F1], {"task": "digits"}, "first").version == 1
    assert store.create_model("digits", [F1], {}, "").version == 2
    assert store.create_model("other", [F1], {}, "").version == 1
    assert store.delete_model("digits", 2)
    assert not store.delete_model("digits", 2)
    assert store.create_model("digits", [F1], {}, "").version == 3
    got = store.get_model("digits", 1)
    assert got is not None and got.tags == {"task": "digits"} and got.files == [F1] and got.description == "first"
    assert [(m.name, m.version) for m in store.list_models()] == [("digits", 1), ("digits", 3), ("other", 1)]
    assert [m.version for m in store.list_models("digits")] == [1, 3]
    assert store.get_model("digits", 2) is None


def test_concurrent_registrations_get_distinct_versions(store: SqliteStore) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def register() -> None:
        for _ in range(10):
            v = store.create_model("m", [F1], {}, "").version
            with lock:
                versions.append(v)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 41))


def test_services_crud(store: SqliteStore) -> None:
    svc = ServiceRecord(
        name="svc",
        models=[ModelRef(name="digits", version=1)],
        deployment_config=parse_deployment_config({"target": {"labels": {"site": "a"}}}),
        source_files=[F1],
        created=T0,
        updated=T0,
    )
    store.put_service(svc)
    assert store.get_service("svc") == svc
    changed = svc.model_copy(update={"models": [ModelRef(name="digits", version=2)]})
    store.put_service(changed)
    assert store.get_service("svc") == changed
    assert [s.name for s in store.list_services()] == ["svc"]
    assert store.delete_service("svc")
    assert store.get_service("svc") is None and not store.delete_service("svc")


def _report(gen: int, labels: dict[str, str] | None = None, fpga: bool = False) -> ReportedState:
    accelerators = [AcceleratorInfo(kind="fpga")] if fpga else []
    return ReportedState(
        device_id="dev-1",
        generation=gen,
        capabilities=DeviceCapabilities(labels=labels or {}, accelerators=accelerators),
        modules=[ModuleStatus(name="svc", service="svc", state=ModuleState.HEALTHY)],
        agent_version="0.1.0",
    )


def _cert(device_id: str = "dev-1", serial: str = "a1") -> CredentialRecord:
    return CredentialRecord(
        device_id=device_id, kind="certificate", serial=serial, fingerprint="sha256:x", issued_at=T0, not_after=T0
    )


def test_a_device_exists_only_by_registration(store: SqliteStore) -> None:
    assert store.record_report(_report(1), T0) is None  # nothing stored for an unregistered id
    assert store.record_presence("dev-1", True, "", T0) is None
    assert store.list_devices() == []

    device = store.register_device("dev-1", {"site": "lab"}, _cert(), T0)
    assert (device.status, device.labels, device.registered_at, device.last_seen) == (
        "registered",
        {"site": "lab"},
        T0,
        None,
    )
    [credential] = store.list_credentials("dev-1")
    assert (credential.kind, credential.serial, credential.revoked_at) == ("certificate", "a1", None)


def test_reports_update_capabilities_but_never_the_operators_labels(store: SqliteStore) -> None:
    store.register_device("dev-1", {"site": "lab"}, _cert(), T0)
    recorded = store.record_report(_report(1, {"site": "evil", "extra": "x"}), T0)
    assert recorded is not None
    device, changed = recorded
    assert changed and device.labels == {"site": "lab"} and device.agent_version == "0.1.0"
    assert device.capabilities.labels == {} and device.first_seen == T0
    assert device.last_report is not None and device.last_report.capabilities.labels == {"site": "evil", "extra": "x"}
    _, changed = store.record_report(_report(2, {"site": "other"}), T0) or (None, True)
    assert not changed  # only the (ignored) labels differ
    device, changed = store.record_report(_report(3, fpga=True), T0) or (None, False)
    assert changed and device is not None and device.last_report is not None and device.last_report.generation == 3


def test_presence(store: SqliteStore) -> None:
    store.register_device("dev-2", {}, _cert("dev-2"), T0)
    device, first = store.record_presence("dev-2", True, "", T0) or (None, False)
    assert first and device is not None and device.presence == "online"
    device, first = store.record_presence("dev-2", False, "", T0) or (None, True)
    assert not first and device is not None and device.presence == "offline"
    assert [d.device_id for d in store.list_devices()] == ["dev-2"]


def test_registering_twice_revoking_and_deleting(store: SqliteStore) -> None:
    store.register_device("dev-1", {"a": "1"}, _cert(serial="a1"), T0)
    with pytest.raises(Conflict, match=r"dev-1 is already registered \(certificate serial a1"):
        store.register_device("dev-1", {}, _cert(serial="b2"), T0)
    desired = DesiredRecord(device_id="dev-1", generation=1, modules=[], payload="{}", published_at=T0)
    store.save_desired(desired)

    revoked = store.revoke_device("dev-1", T0)
    assert revoked is not None and (revoked.status, revoked.revoked_at) == ("revoked", T0)
    assert store.get_desired("dev-1") is None
    assert [c.revoked_at for c in store.list_credentials("dev-1")] == [T0]
    assert store.record_report(_report(5), T0) is None and store.record_presence("dev-1", True, "", T0) is None
    assert store.revoke_device("dev-1", T0) is not None  # idempotent
    with pytest.raises(Conflict, match="dev-1 is revoked; delete it"):
        store.register_device("dev-1", {}, _cert(serial="b2"), T0)
    assert store.revoke_device("dev-9", T0) is None

    assert store.delete_device("dev-1", T0) and not store.delete_device("dev-1", T0)
    assert store.get_device("dev-1") is None
    assert [c.serial for c in store.list_credentials()] == ["a1"]  # kept (revoked) for the CRL
    again = store.register_device("dev-1", {"b": "2"}, _cert(serial="c3"), T0)
    assert again.labels == {"b": "2"} and [c.revoked_at is None for c in store.list_credentials("dev-1")] == [
        False,
        True,
    ]


def test_delete_revokes_a_live_credential(store: SqliteStore) -> None:
    store.register_device("dev-1", {}, _cert(), T0)
    assert store.delete_device("dev-1", T0)
    assert [c.revoked_at for c in store.list_credentials("dev-1")] == [T0]


def test_devices_from_before_registration_become_registered_without_a_credential(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO devices VALUES ('old-1', '{\"site\": \"a\"}', '{}', 'online', '0.1', NULL, ?, ?)",
            (T0.isoformat(), T0.isoformat()),
        )
    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS) == 3
        device = store.get_device("old-1")
        assert device is not None and (device.status, device.labels, device.registered_at) == (
            "registered",
            {"site": "a"},
            T0,
        )
        assert store.list_credentials("old-1") == []
        # `device register` gives it its first credential and keeps its labels when none are given
        again = store.register_device("old-1", None, _cert("old-1"), T0)
        assert again.labels == {"site": "a"} and len(store.list_credentials("old-1")) == 1
    finally:
        store.close()


def test_desired_generation_strictly_increases_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = SqliteStore(path)
    record = DesiredRecord(device_id="dev-1", generation=1, modules=[{"name": "svc"}], payload="{}", published_at=T0)
    store.save_desired(record)
    store.save_desired(record.model_copy(update={"generation": 2}))
    with pytest.raises(StoreError, match="generation 2 is not greater than the stored generation 2"):
        store.save_desired(record.model_copy(update={"generation": 2}))
    store.close()
    reopened = SqliteStore(path)
    got = reopened.get_desired("dev-1")
    assert got is not None and got.generation == 2 and got.modules == [{"name": "svc"}]
    assert reopened.schema_version() == len(MIGRATIONS)
    reopened.close()


def test_a_schema_1_database_is_migrated_keeping_its_data_and_gains_tokens(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as conn:  # a hub database as the hub before tokens left it
        conn.executescript(MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute("INSERT INTO model_names VALUES ('digits', 1)")
        conn.execute(
            "INSERT INTO models VALUES ('digits', 1, '{}', '', ?, ?)",
            (T0.isoformat(), '[{"path": "m.onnx", "digest": "sha256:' + "a" * 64 + '", "size": 3}]'),
        )
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS)  # tokens (2), then device identities (3)
        assert [(m.name, m.version) for m in store.list_models()] == [("digits", 1)]
        assert store.list_tokens() == []
        store.create_token(TOKEN)
        assert store.get_token(TOKEN.id) == TOKEN
    finally:
        store.close()


def test_tokens_crud_and_live_names_are_unique(store: SqliteStore) -> None:
    store.create_token(TOKEN)
    with pytest.raises(Conflict, match="a token named 'ci' already exists \\(id 0123456789ab\\)"):
        store.create_token(TOKEN.model_copy(update={"id": "ba9876543210"}))
    with pytest.raises(Conflict, match="a token with id 0123456789ab already exists"):
        store.create_token(TOKEN.model_copy(update={"name": "other"}))
    later = T0 + timedelta(minutes=1)
    store.touch_token(TOKEN.id, later)
    got = store.get_token(TOKEN.id)
    assert got is not None and got.last_used == later and got.role == Role.DEPLOY
    revoked = store.revoke_token(TOKEN.id, later)
    assert revoked is not None and revoked.revoked_at == later
    again = store.revoke_token(TOKEN.id, later + timedelta(minutes=1))
    assert again is not None and again.revoked_at == later  # the first revocation stands
    assert store.revoke_token("nope", later) is None and store.get_token("nope") is None
    store.create_token(TOKEN.model_copy(update={"id": "ba9876543210", "created_at": later}))  # the name is free again
    assert [t.id for t in store.list_tokens()] == [TOKEN.id, "ba9876543210"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        SqliteStore(path)


def test_open_store_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(store, SqliteStore)
    store.close()
    with pytest.raises(SettingsError, match="PostgreSQL is not implemented"):
        open_store("postgresql://localhost/edgefleet")
    with pytest.raises(SettingsError, match="unsupported scheme"):
        open_store("mysql://x")
