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
from edgefleet.hub.server.store import DesiredRecord, FileEntry, ServiceRecord, SqliteStore, TokenRecord, open_store
from edgefleet.hub.server.store.sqlite import MIGRATIONS
from edgefleet.protocol.models import DeviceCapabilities, ModelRef, ModuleState, ModuleStatus, ReportedState

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


def _report(gen: int, labels: dict[str, str] | None = None) -> ReportedState:
    return ReportedState(
        device_id="dev-1",
        generation=gen,
        capabilities=DeviceCapabilities(labels=labels or {}),
        modules=[ModuleStatus(name="svc", service="svc", state=ModuleState.HEALTHY)],
        agent_version="0.1.0",
    )


def test_devices_appear_on_first_report_and_flag_capability_changes(store: SqliteStore) -> None:
    device, changed = store.record_report(_report(1, {"site": "a"}), T0)
    assert changed and device.labels == {"site": "a"} and device.agent_version == "0.1.0"
    _, changed = store.record_report(_report(2, {"site": "a"}), T0)
    assert not changed
    device, changed = store.record_report(_report(3, {"site": "b"}), T0)
    assert changed and device.last_report is not None and device.last_report.generation == 3


def test_presence(store: SqliteStore) -> None:
    device, new = store.record_presence("dev-2", True, "", T0)
    assert new and device.presence == "online"
    device, new = store.record_presence("dev-2", False, "", T0)
    assert not new and device.presence == "offline"
    assert [d.device_id for d in store.list_devices()] == ["dev-2"]


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
    assert reopened.schema_version() == len(MIGRATIONS) == 2
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
        assert store.schema_version() == 2
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
