"""The hub's registry: models, services, devices (with their credentials), the desired state published to each
device, operator tokens.

Callers use the ``Store`` interface and ``open_store(url)``; adding PostgreSQL means one new module
implementing ``Store`` and one branch in ``open_store``, nothing else.
"""

from __future__ import annotations

from edgefleet.hub.errors import SettingsError
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
from edgefleet.hub.server.store.sqlite import SqliteStore

__all__ = [
    "CredentialRecord",
    "DesiredRecord",
    "DeviceRecord",
    "FileEntry",
    "ModelRecord",
    "ServiceRecord",
    "SqliteStore",
    "Store",
    "TokenRecord",
    "open_store",
]


def open_store(url: str) -> Store:
    """``sqlite:///relative/or/absolute/path.db`` or ``sqlite:///:memory:``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :])
    scheme = url.split(":", 1)[0]
    if scheme in ("postgresql", "postgres"):
        raise SettingsError(
            f"database URL {url!r}: PostgreSQL is not implemented yet; use sqlite:///<path> "
            "(a PostgreSQL Store only has to implement edgefleet.hub.server.store.base.Store)"
        )
    raise SettingsError(f"database URL {url!r}: unsupported scheme {scheme!r}; use sqlite:///<path>")
