"""SQLite implementation of the Store: one connection guarded by a lock, WAL, versioned schema."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.hub.errors import Conflict, StoreError
from edgefleet.hub.server.store.base import Store
from edgefleet.hub.server.store.records import (
    CredentialRecord,
    DesiredRecord,
    DeviceRecord,
    FileEntry,
    ModelRecord,
    ServiceRecord,
    TokenRecord,
)
from edgefleet.protocol.models import DeviceCapabilities, ReportedState, utcnow

log = logging.getLogger(__name__)

# Append-only: migration N brings the schema from version N-1 to N. Never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE model_names (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
    CREATE TABLE models (
        name TEXT NOT NULL, version INTEGER NOT NULL, tags TEXT NOT NULL, description TEXT NOT NULL,
        created TEXT NOT NULL, files TEXT NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE services (name TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY, labels TEXT NOT NULL, capabilities TEXT NOT NULL, presence TEXT NOT NULL,
        agent_version TEXT NOT NULL, last_report TEXT, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);
    CREATE TABLE desired (
        device_id TEXT PRIMARY KEY, generation INTEGER NOT NULL, modules TEXT NOT NULL, payload TEXT NOT NULL,
        published_at TEXT NOT NULL);
    """,
    # 2: operator tokens. Only a hash of each token is stored; a revoked token stays (so it can be named
    # when it is refused) and frees its name for a new one.
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, secret_hash TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT, last_used TEXT, revoked_at TEXT);
    CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
    """,
    # 3: device identities. Devices exist by registration (status, registered_at, revoked_at), are
    # never seen until they report (first_seen/last_seen may be NULL), and get credentials. Devices
    # from before (they appeared by reporting) count as registered without a credential, keeping the
    # labels they reported as the operator's: `edgefleet device register` gives them one.
    """
    CREATE TABLE devices_v2 (
        device_id TEXT PRIMARY KEY, labels TEXT NOT NULL, capabilities TEXT NOT NULL, presence TEXT NOT NULL,
        agent_version TEXT NOT NULL, last_report TEXT, first_seen TEXT, last_seen TEXT,
        status TEXT NOT NULL, registered_at TEXT NOT NULL, revoked_at TEXT);
    INSERT INTO devices_v2 SELECT device_id, labels, capabilities, presence, agent_version, last_report,
        first_seen, last_seen, 'registered', first_seen, NULL FROM devices;
    DROP TABLE devices;
    ALTER TABLE devices_v2 RENAME TO devices;
    CREATE TABLE credentials (
        id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, kind TEXT NOT NULL, serial TEXT,
        fingerprint TEXT, password_hash TEXT, issued_at TEXT NOT NULL, not_after TEXT, revoked_at TEXT);
    CREATE INDEX credentials_device ON credentials (device_id);
    """,
]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class SqliteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by all threads behind a lock: simple, and SQLite serializes writes anyway.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            current = row["version"] if row else 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: database schema version {current} is newer than this hub knows "
                    f"({len(MIGRATIONS)}); upgrade edgefleet or use another data directory"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                log.info("migrating hub database %s to schema version %d", self.path, version)
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        c.execute(statement)
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
            else:
                c.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT version FROM schema_version").fetchone()["version"])

    # models ------------------------------------------------------------------------------------
    @staticmethod
    def _model(row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(
            name=row["name"],
            version=row["version"],
            tags=json.loads(row["tags"]),
            description=row["description"],
            created=datetime.fromisoformat(row["created"]),
            files=[FileEntry.model_validate(f) for f in json.loads(row["files"])],
        )

    def create_model(self, name: str, files: list[FileEntry], tags: dict[str, str], description: str) -> ModelRecord:
        with self._tx() as c:
            # Versions are never reused, also after a delete: "digits:2" always means the same bytes.
            row = c.execute("SELECT last_version FROM model_names WHERE name = ?", (name,)).fetchone()
            version = (row["last_version"] if row else 0) + 1
            c.execute(
                "INSERT INTO model_names (name, last_version) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_version = excluded.last_version",
                (name, version),
            )
            record = ModelRecord(
                name=name, version=version, tags=tags, description=description, created=utcnow(), files=files
            )
            c.execute(
                "INSERT INTO models (name, version, tags, description, created, files) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    version,
                    _dumps(tags),
                    description,
                    record.created.isoformat(),
                    _dumps([f.model_dump() for f in files]),
                ),
            )
        return record

    def get_model(self, name: str, version: int) -> ModelRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM models WHERE name = ? AND version = ?", (name, version)).fetchone()
        return self._model(row) if row else None

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        with self._lock:
            if name is None:
                rows = self._conn.execute("SELECT * FROM models ORDER BY name, version").fetchall()
            else:
                rows = self._conn.execute("SELECT * FROM models WHERE name = ? ORDER BY version", (name,)).fetchall()
        return [self._model(r) for r in rows]

    def delete_model(self, name: str, version: int) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version)).rowcount > 0

    # services ----------------------------------------------------------------------------------
    def put_service(self, service: ServiceRecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO services (name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                (service.name, service.model_dump_json(by_alias=True)),
            )

    def get_service(self, name: str) -> ServiceRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM services WHERE name = ?", (name,)).fetchone()
        return ServiceRecord.model_validate_json(row["body"]) if row else None

    def list_services(self) -> list[ServiceRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT body FROM services ORDER BY name").fetchall()
        return [ServiceRecord.model_validate_json(r["body"]) for r in rows]

    def delete_service(self, name: str) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM services WHERE name = ?", (name,)).rowcount > 0

    # devices -----------------------------------------------------------------------------------
    @staticmethod
    def _device(row: sqlite3.Row) -> DeviceRecord:
        return DeviceRecord(
            device_id=row["device_id"],
            labels=json.loads(row["labels"]),
            capabilities=DeviceCapabilities.model_validate_json(row["capabilities"]),
            presence=row["presence"],
            agent_version=row["agent_version"],
            last_report=ReportedState.model_validate_json(row["last_report"]) if row["last_report"] else None,
            first_seen=_time(row["first_seen"]),
            last_seen=_time(row["last_seen"]),
            status=row["status"],
            registered_at=datetime.fromisoformat(row["registered_at"]),
            revoked_at=_time(row["revoked_at"]),
        )

    @staticmethod
    def _credential(row: sqlite3.Row) -> CredentialRecord:
        return CredentialRecord(
            id=row["id"],
            device_id=row["device_id"],
            kind=row["kind"],
            serial=row["serial"],
            fingerprint=row["fingerprint"],
            password_hash=row["password_hash"],
            issued_at=datetime.fromisoformat(row["issued_at"]),
            not_after=_time(row["not_after"]),
            revoked_at=_time(row["revoked_at"]),
        )

    def _device_row(self, c: sqlite3.Connection, device_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = c.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return row

    def register_device(
        self, device_id: str, labels: dict[str, str] | None, credential: CredentialRecord, at: datetime
    ) -> DeviceRecord:
        with self._tx() as c:
            row = self._device_row(c, device_id)
            if row is not None and row["status"] == "revoked":
                raise Conflict(
                    f"device {device_id} is revoked; delete it (`edgefleet device delete {device_id}`) "
                    "before registering it again"
                )
            live = c.execute(
                "SELECT kind, serial FROM credentials WHERE device_id = ? AND revoked_at IS NULL", (device_id,)
            ).fetchone()
            if live is not None:
                what = f"certificate serial {live['serial']}" if live["kind"] == "certificate" else "a password"
                raise Conflict(
                    f"device {device_id} is already registered ({what}); to provision it again, "
                    f"`edgefleet device revoke {device_id}` and `edgefleet device delete {device_id}` first"
                )
            if row is None:
                c.execute(
                    "INSERT INTO devices (device_id, labels, capabilities, presence, agent_version, last_report, "
                    "first_seen, last_seen, status, registered_at, revoked_at) "
                    "VALUES (?, ?, '{}', 'unknown', '', NULL, NULL, NULL, 'registered', ?, NULL)",
                    (device_id, _dumps(labels or {}), at.isoformat()),
                )
            elif labels is not None:
                c.execute("UPDATE devices SET labels = ? WHERE device_id = ?", (_dumps(labels), device_id))
            c.execute(
                "INSERT INTO credentials (device_id, kind, serial, fingerprint, password_hash, issued_at, not_after, "
                "revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    device_id,
                    credential.kind,
                    credential.serial,
                    credential.fingerprint,
                    credential.password_hash,
                    credential.issued_at.isoformat(),
                    _iso(credential.not_after),
                ),
            )
            new_row = self._device_row(c, device_id)
        assert new_row is not None
        return self._device(new_row)

    def set_labels(self, device_id: str, labels: dict[str, str]) -> DeviceRecord | None:
        with self._tx() as c:
            c.execute("UPDATE devices SET labels = ? WHERE device_id = ?", (_dumps(labels), device_id))
            row = self._device_row(c, device_id)
        return self._device(row) if row else None

    def _revoke_credentials(self, c: sqlite3.Connection, device_id: str, at: datetime) -> None:
        c.execute(
            "UPDATE credentials SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
            (at.isoformat(), device_id),
        )

    def revoke_device(self, device_id: str, at: datetime) -> DeviceRecord | None:
        with self._tx() as c:
            row = self._device_row(c, device_id)
            if row is None:
                return None
            if row["status"] != "revoked":
                c.execute(
                    "UPDATE devices SET status = 'revoked', revoked_at = ? WHERE device_id = ?",
                    (at.isoformat(), device_id),
                )
            self._revoke_credentials(c, device_id, at)
            c.execute("DELETE FROM desired WHERE device_id = ?", (device_id,))
            row = self._device_row(c, device_id)
        assert row is not None
        return self._device(row)

    def delete_device(self, device_id: str, at: datetime) -> bool:
        with self._tx() as c:
            self._revoke_credentials(c, device_id, at)
            c.execute("DELETE FROM desired WHERE device_id = ?", (device_id,))
            return c.execute("DELETE FROM devices WHERE device_id = ?", (device_id,)).rowcount > 0

    def list_credentials(self, device_id: str | None = None) -> list[CredentialRecord]:
        with self._lock:
            if device_id is None:
                rows = self._conn.execute("SELECT * FROM credentials ORDER BY id").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM credentials WHERE device_id = ? ORDER BY id", (device_id,)
                ).fetchall()
        return [self._credential(r) for r in rows]

    def record_report(self, report: ReportedState, at: datetime) -> tuple[DeviceRecord, bool] | None:
        # the device's own labels are not stored: labels are the operator's (registration, `device label`)
        capabilities = report.capabilities.model_copy(update={"labels": {}}).model_dump_json(by_alias=True)
        with self._tx() as c:
            old = self._device_row(c, report.device_id)
            if old is None or old["status"] != "registered":
                return None
            changed = old["last_seen"] is None or old["capabilities"] != capabilities
            agent_version = report.agent_version
            c.execute(
                "UPDATE devices SET capabilities = ?, last_report = ?, last_seen = ?, "
                "first_seen = COALESCE(first_seen, ?), "
                "agent_version = CASE WHEN ? = '' THEN agent_version ELSE ? END WHERE device_id = ?",
                (
                    capabilities,
                    report.model_dump_json(by_alias=True),
                    at.isoformat(),
                    at.isoformat(),
                    agent_version,
                    agent_version,
                    report.device_id,
                ),
            )
            row = self._device_row(c, report.device_id)
        assert row is not None
        return self._device(row), changed

    def record_presence(
        self, device_id: str, online: bool, agent_version: str, at: datetime
    ) -> tuple[DeviceRecord, bool] | None:
        with self._tx() as c:
            old = self._device_row(c, device_id)
            if old is None or old["status"] != "registered":
                return None
            first = old["last_seen"] is None
            c.execute(
                "UPDATE devices SET presence = ?, last_seen = ?, first_seen = COALESCE(first_seen, ?), "
                "agent_version = CASE WHEN ? = '' THEN agent_version ELSE ? END WHERE device_id = ?",
                (
                    "online" if online else "offline",
                    at.isoformat(),
                    at.isoformat(),
                    agent_version,
                    agent_version,
                    device_id,
                ),
            )
            row = self._device_row(c, device_id)
        assert row is not None
        return self._device(row), first

    def get_device(self, device_id: str) -> DeviceRecord | None:
        with self._lock:
            row = self._device_row(self._conn, device_id)
        return self._device(row) if row else None

    def list_devices(self) -> list[DeviceRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return [self._device(r) for r in rows]

    # desired state -----------------------------------------------------------------------------
    @staticmethod
    def _desired(row: sqlite3.Row) -> DesiredRecord:
        return DesiredRecord(
            device_id=row["device_id"],
            generation=row["generation"],
            modules=json.loads(row["modules"]),
            payload=row["payload"],
            published_at=datetime.fromisoformat(row["published_at"]),
        )

    def get_desired(self, device_id: str) -> DesiredRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM desired WHERE device_id = ?", (device_id,)).fetchone()
        return self._desired(row) if row else None

    def list_desired(self) -> list[DesiredRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM desired ORDER BY device_id").fetchall()
        return [self._desired(r) for r in rows]

    def save_desired(self, record: DesiredRecord) -> None:
        with self._tx() as c:
            row = c.execute("SELECT generation FROM desired WHERE device_id = ?", (record.device_id,)).fetchone()
            if row and record.generation <= row["generation"]:
                raise StoreError(
                    f"device {record.device_id}: generation {record.generation} is not greater than the stored "
                    f"generation {row['generation']}; generations must strictly increase"
                )
            c.execute(
                "INSERT INTO desired (device_id, generation, modules, payload, published_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET generation = excluded.generation, modules = excluded.modules, "
                "payload = excluded.payload, published_at = excluded.published_at",
                (
                    record.device_id,
                    record.generation,
                    _dumps(record.modules),
                    record.payload,
                    record.published_at.isoformat(),
                ),
            )

    # operator tokens ---------------------------------------------------------------------------
    @staticmethod
    def _token(row: sqlite3.Row) -> TokenRecord:
        return TokenRecord(
            id=row["id"],
            name=row["name"],
            role=row["role"],
            secret_hash=row["secret_hash"],
            created_at=datetime.fromisoformat(row["created_at"]),
            expires_at=_time(row["expires_at"]),
            last_used=_time(row["last_used"]),
            revoked_at=_time(row["revoked_at"]),
        )

    def create_token(self, record: TokenRecord) -> None:
        with self._tx() as c:
            live = c.execute("SELECT id FROM tokens WHERE name = ? AND revoked_at IS NULL", (record.name,)).fetchone()
            if live:
                raise Conflict(
                    f"a token named {record.name!r} already exists (id {live['id']}); choose another name, or "
                    f"revoke it first (`edgefleet token revoke {live['id']}`, or `edgefleet hub token revoke` "
                    "on the hub machine)"
                )
            if c.execute("SELECT 1 FROM tokens WHERE id = ?", (record.id,)).fetchone():
                raise Conflict(f"a token with id {record.id} already exists")
            c.execute(
                "INSERT INTO tokens (id, name, role, secret_hash, created_at, expires_at, last_used, revoked_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    record.role.value,
                    record.secret_hash,
                    record.created_at.isoformat(),
                    _iso(record.expires_at),
                    _iso(record.last_used),
                    _iso(record.revoked_at),
                ),
            )

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return self._token(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM tokens ORDER BY created_at, id").fetchall()
        return [self._token(r) for r in rows]

    def revoke_token(self, token_id: str, at: datetime) -> TokenRecord | None:
        with self._tx() as c:
            c.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at.isoformat(), token_id)
            )
            row = c.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return self._token(row) if row else None

    def touch_token(self, token_id: str, at: datetime) -> None:
        with self._tx() as c:
            c.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (at.isoformat(), token_id))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
