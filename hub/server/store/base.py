"""The Store interface. Callers depend on this only; SQLite implements it now, PostgreSQL can later.

Implementations must be safe to call from several threads (API worker threads and the MQTT thread).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from edgefleet.hub.server.store.records import (
    CredentialRecord,
    DesiredRecord,
    DeviceRecord,
    FileEntry,
    ModelRecord,
    ServiceRecord,
    TokenRecord,
)
from edgefleet.protocol.models import ReportedState


class Store(ABC):
    # models ------------------------------------------------------------------------------------
    @abstractmethod
    def create_model(self, name: str, files: list[FileEntry], tags: dict[str, str], description: str) -> ModelRecord:
        """Register the next version of ``name`` (1 for a new name); atomic against concurrent calls."""

    @abstractmethod
    def get_model(self, name: str, version: int) -> ModelRecord | None: ...

    @abstractmethod
    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        """All versions (of ``name``), ordered by name then version."""

    @abstractmethod
    def delete_model(self, name: str, version: int) -> bool:
        """True when it existed. Callers check that no service uses it first."""

    # services ----------------------------------------------------------------------------------
    @abstractmethod
    def put_service(self, service: ServiceRecord) -> None:
        """Create or replace the service named ``service.name``."""

    @abstractmethod
    def get_service(self, name: str) -> ServiceRecord | None: ...

    @abstractmethod
    def list_services(self) -> list[ServiceRecord]: ...

    @abstractmethod
    def delete_service(self, name: str) -> bool: ...

    # devices -----------------------------------------------------------------------------------
    # Devices exist only by registration; reports and presence update registered devices only.
    @abstractmethod
    def register_device(
        self, device_id: str, labels: dict[str, str] | None, credential: CredentialRecord, at: datetime
    ) -> DeviceRecord:
        """Create the device (or give a device without a live credential one) and store its credential,
        atomically. Conflict when it has a live credential already or is revoked. ``labels`` None keeps
        an existing device's labels."""

    @abstractmethod
    def set_labels(self, device_id: str, labels: dict[str, str]) -> DeviceRecord | None:
        """Replace the operator's labels; None when the device does not exist."""

    @abstractmethod
    def revoke_device(self, device_id: str, at: datetime) -> DeviceRecord | None:
        """Mark the device and its credentials revoked and forget its desired state; None when unknown.
        Idempotent: revoking a revoked device changes nothing."""

    @abstractmethod
    def delete_device(self, device_id: str, at: datetime) -> bool:
        """Revoke its credentials (kept for the CRL), delete the device and its desired state; True if it existed."""

    @abstractmethod
    def list_credentials(self, device_id: str | None = None) -> list[CredentialRecord]:
        """Every credential ever issued (of ``device_id``), revoked ones included, oldest first."""

    @abstractmethod
    def record_report(self, report: ReportedState, at: datetime) -> tuple[DeviceRecord, bool] | None:
        """Store a registered device's report; True when its capabilities changed. None (nothing stored)
        when the device is not registered or is revoked. The report's labels are not the device's."""

    @abstractmethod
    def record_presence(
        self, device_id: str, online: bool, agent_version: str, at: datetime
    ) -> tuple[DeviceRecord, bool] | None:
        """Store a registered device's presence; True when it is the first sign of life. None (nothing
        stored) when the device is not registered or is revoked."""

    @abstractmethod
    def get_device(self, device_id: str) -> DeviceRecord | None: ...

    @abstractmethod
    def list_devices(self) -> list[DeviceRecord]:
        """Every device, revoked ones included (``status``)."""

    # desired state -----------------------------------------------------------------------------
    @abstractmethod
    def get_desired(self, device_id: str) -> DesiredRecord | None: ...

    @abstractmethod
    def list_desired(self) -> list[DesiredRecord]: ...

    @abstractmethod
    def save_desired(self, record: DesiredRecord) -> None:
        """Store the manifest just signed; StoreError unless its generation exceeds the stored one."""

    # operator tokens ---------------------------------------------------------------------------
    @abstractmethod
    def create_token(self, record: TokenRecord) -> None:
        """Store a new token; Conflict when its id exists or a live (unrevoked) token has its name."""

    @abstractmethod
    def get_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""

    @abstractmethod
    def revoke_token(self, token_id: str, at: datetime) -> TokenRecord | None:
        """Mark the token revoked (keeping the first revocation time); None when it does not exist."""

    @abstractmethod
    def touch_token(self, token_id: str, at: datetime) -> None:
        """Record that the token was just used."""

    @abstractmethod
    def close(self) -> None: ...
