"""What the store holds, as camelCase JSON in the database.

The API answers with edgefleet.hub.schemas, built from these records by the registry, so the stored
form and the API bodies can change apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from edgefleet.hub.configs import DeploymentConfig, InferenceConfig
from edgefleet.hub.schemas import Role
from edgefleet.protocol.models import DeviceCapabilities, ModelRef, ReportedState

PresenceValue = Literal["online", "offline", "unknown"]
DeviceStatus = Literal["registered", "revoked"]
CredentialKind = Literal["certificate", "password"]


class RecordModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FileEntry(RecordModel):
    """One file of a model version or of a service's source directory, stored as a blob."""

    path: str = Field(description="relative path, '/'-separated")
    digest: str = Field(description="sha256:<hex> of the blob")
    size: int = Field(ge=0)


class ModelRecord(RecordModel):
    name: str
    version: int = Field(ge=1, description="auto-incremented per name, starting at 1")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    created: datetime
    files: list[FileEntry]

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.version)


class ScoringKeys(RecordModel):
    """A service's two scoring keys (authEnabled). Kept as they are, not hashed: the hub must put them
    into the signed manifest and show them to operators (``edgefleet service keys``)."""

    primary_key: str
    secondary_key: str


class ServiceRecord(RecordModel):
    name: str
    models: list[ModelRef]
    inference_config: InferenceConfig = Field(default_factory=InferenceConfig)
    deployment_config: DeploymentConfig = Field(default_factory=DeploymentConfig)
    source_files: list[FileEntry] = Field(default_factory=list)
    created: datetime
    updated: datetime
    keys: ScoringKeys | None = Field(default=None, description="present exactly when authEnabled")


class DeviceRecord(RecordModel):
    """A device of the fleet: registered by an operator (who alone sets its labels), then observed."""

    device_id: str
    labels: dict[str, str] = Field(default_factory=dict, description="the operator's; never from reports")
    capabilities: DeviceCapabilities = Field(
        default_factory=DeviceCapabilities, description="as last reported, without the device's own labels"
    )
    presence: PresenceValue = "unknown"
    agent_version: str = ""
    last_report: ReportedState | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    status: DeviceStatus = "registered"
    registered_at: datetime
    revoked_at: datetime | None = None


class CredentialRecord(RecordModel):
    """An identity issued to a device: a client certificate (by serial) or a broker password (its hash).

    Kept after revocation and after the device is deleted: revoked serials stay in the CRL until
    their certificates expire."""

    id: int = 0
    device_id: str
    kind: CredentialKind
    serial: str | None = Field(default=None, description="certificate serial number, hex")
    fingerprint: str | None = Field(default=None, description="sha256:<hex> of the certificate (DER)")
    password_hash: str | None = Field(default=None, description="the broker's password-file form, never the password")
    issued_at: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None


class DesiredRecord(RecordModel):
    """The last manifest published to one device."""

    device_id: str
    generation: int = Field(ge=1)
    modules: list[dict[str, Any]] = Field(description="the manifest's modules as wire JSON (for change detection)")
    payload: str = Field(description="the signed manifest exactly as published")
    published_at: datetime


class TokenRecord(RecordModel):
    """An operator token: everything but its secret, of which only a hash is kept."""

    id: str = Field(description="the token's public id, also inside the token (eft_<id>_<secret>)")
    name: str
    role: Role
    secret_hash: str = Field(description="sha256 hex of the whole token; the token itself is never stored")
    created_at: datetime
    expires_at: datetime | None = None
    last_used: datetime | None = None
    revoked_at: datetime | None = None
