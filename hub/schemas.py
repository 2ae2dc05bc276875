"""The REST API's request and response bodies (camelCase JSON), shared by the server and the client.

Pure pydantic on top of the protocol and config models: no server code, so the CLI and scripts
can use the very types the API declares (``response_model``) without importing FastAPI or the
store. The server maps its store records onto these; a record is never an API body.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from edgefleet.hub.configs import DeploymentConfig, InferenceConfig
from edgefleet.hub.refs import MODEL_NAME_PATTERN
from edgefleet.protocol.bootstrap import AuthKind, BootstrapBundle
from edgefleet.protocol.models import DeviceCapabilities, ModelRef, ModuleState, ReportedState, Telemetry

PresenceValue = Literal["online", "offline", "unknown"]
DeviceStatus = Literal["registered", "revoked"]
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
TokenState = Literal["active", "expired", "revoked"]


class Role(str, Enum):
    """What an operator token may do. Each role includes the ones before it: admin ⊇ deploy ⊇ read."""

    READ = "read"  # look: models, services, devices
    DEPLOY = "deploy"  # change the fleet: models, blobs, services, direct methods
    ADMIN = "admin"  # manage tokens, device registration and identities, the hub key

    def includes(self, other: Role) -> bool:
        return _ROLE_RANK[self] >= _ROLE_RANK[other]


_ROLE_RANK = {Role.READ: 0, Role.DEPLOY: 1, Role.ADMIN: 2}


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorBody(ApiModel):
    error: str = Field(description="what was wrong, where, and what to do")


class Health(ApiModel):
    status: Literal["ok"] = "ok"
    version: str


class HubInfo(ApiModel):
    version: str
    public_key: str = Field(description="base64 raw ed25519 public key manifests are signed with")
    key_id: str
    key_fingerprint: str = Field(
        description="sha256:<hex> of the raw key: give it to `edgefleet-agent --hub-key-fingerprint` to pin on first use"
    )
    broker_url: str
    broker_connected: bool
    next_key_id: str | None = Field(default=None, description="key rotation: the key being announced")
    next_key_fingerprint: str | None = None
    ca_certificate: str | None = Field(
        default=None,
        description="PEM of the hub's CA (issues the broker's and, with --tls, the API's certificate); fetched over "
        "the network it is trust on first use: compare caFingerprint with `edgefleet hub ca` on the hub machine",
    )
    ca_fingerprint: str | None = Field(default=None, description="sha256:<hex> of the CA certificate's DER bytes")


class DeviceKeyAck(ApiModel):
    device: str
    acknowledged: bool = Field(description="accepted a manifest that announces the next key")
    reason: str


class KeyRotationView(ApiModel):
    key_id: str = Field(description="the key manifests are signed with now")
    key_fingerprint: str
    next_key_id: str | None = Field(default=None, description="the key announced; none: no rotation runs")
    next_key_fingerprint: str | None = None
    devices: list[DeviceKeyAck] = Field(default_factory=list)
    complete: bool = Field(description="every registered device acknowledged: the rotation may finish")


class BlobStored(ApiModel):
    digest: str
    size: int = Field(ge=0)
    created: bool = Field(description="false when the blob was already stored")


class FileEntry(ApiModel):
    """One file of a model version or of a service's source directory, stored as a blob."""

    path: str = Field(description="relative path, '/'-separated")
    digest: str = Field(description="sha256:<hex> of the blob")
    size: int = Field(ge=0)


# models ----------------------------------------------------------------------------------------
class ModelCreate(ApiModel):
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    files: list[FileEntry] = Field(min_length=1, description="each file's blob must be uploaded first")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class ModelView(ApiModel):
    name: str
    version: int = Field(ge=1, description="auto-incremented per name, starting at 1")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    created: datetime
    files: list[FileEntry]


# services --------------------------------------------------------------------------------------
_MODELS = "NAME:VERSION of registered models, or NAME for its latest version (resolved when deployed)"
_INFERENCE = "inferenceconfig.json as is (edgefleet's or Azure ML's)"
_DEPLOYMENT = "deploymentconfig.json as is (edgefleet's, or Azure ML's for local, ACI or AKS)"


class ServiceCreate(ApiModel):
    name: str = Field(description="lowercase letters, digits and '-'; also the module name on devices")
    models: list[str] = Field(min_length=1, description=_MODELS)
    inference_config: dict[str, Any] | None = Field(default=None, description=_INFERENCE)
    deployment_config: dict[str, Any] | None = Field(default=None, description=_DEPLOYMENT)
    source_files: list[FileEntry] = Field(default_factory=list, description="paths relative to sourceDirectory")
    overwrite: bool = Field(default=False, description="replace a service of the same name")


class ServiceUpdate(ApiModel):
    """Change a deployed service: each part given replaces the service's; the others stay as they are."""

    models: list[str] | None = Field(default=None, min_length=1, description=_MODELS)
    inference_config: dict[str, Any] | None = Field(default=None, description=_INFERENCE)
    deployment_config: dict[str, Any] | None = Field(default=None, description=_DEPLOYMENT)
    source_files: list[FileEntry] | None = Field(default=None, description="the service's source files, all of them")


class ServiceKeys(ApiModel):
    """A service's scoring keys: a request carries one as ``Authorization: Bearer <key>``."""

    primary_key: str
    secondary_key: str


class KeyRegenerate(ApiModel):
    key: Literal["primary", "secondary"] = Field(
        description="the key to replace; the other keeps working while the new one rolls out to devices"
    )


class DeviceServiceState(ApiModel):
    """One targeted device's part in a service."""

    device: str
    state: ModuleState
    message: str = ""
    endpoint: str | None = None
    backend: str | None = None
    reason: str | None = Field(default=None, description="why the backend was chosen")
    backend_timings_ms: dict[str, float] = Field(default_factory=dict, description="measured per candidate backend")
    generation: int | None = Field(default=None, description="generation the device's report describes")
    desired_generation: int | None = None
    online: bool | None = None
    restarts: int = 0
    rolled_back: bool = False


class ServiceView(ApiModel):
    name: str
    models: list[ModelRef]
    inference_config: InferenceConfig = Field(default_factory=InferenceConfig)
    deployment_config: DeploymentConfig = Field(default_factory=DeploymentConfig)
    source_files: list[FileEntry] = Field(default_factory=list)
    created: datetime
    updated: datetime
    state: ModuleState
    reason: str = ""
    target: str = Field(description="the device selector in words")
    devices: list[DeviceServiceState] = Field(default_factory=list)


class ServiceDeployed(ServiceView):
    """The answer to a deploy or an update: the service, and what its config files asked for that
    edgefleet does not do as asked (one line each, naming the file and the field)."""

    warnings: list[str] = Field(default_factory=list)


# devices ---------------------------------------------------------------------------------------
class CredentialView(ApiModel):
    """The identity a device connects with (never the secret itself)."""

    kind: AuthKind
    serial: str | None = Field(default=None, description="client certificate serial, hex")
    fingerprint: str | None = Field(default=None, description="sha256:<hex> of the certificate")
    issued_at: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None


class DeviceView(ApiModel):
    device_id: str
    status: DeviceStatus = Field(default="registered", description="revoked devices are out of the fleet")
    labels: dict[str, str] = Field(default_factory=dict, description="set by operators, never by the device")
    capabilities: DeviceCapabilities = Field(default_factory=DeviceCapabilities)
    presence: PresenceValue = "unknown"
    agent_version: str = ""
    last_report: ReportedState | None = None
    registered_at: datetime
    revoked_at: datetime | None = None
    first_seen: datetime | None = Field(default=None, description="first report or presence; none: never seen")
    last_seen: datetime | None = None
    desired_generation: int | None = None
    telemetry: Telemetry | None = None
    credential: CredentialView | None = Field(default=None, description="the live credential (or the last one)")


class DeviceCreate(ApiModel):
    """Register a device: it joins the fleet with these labels and gets an identity."""

    device_id: str = Field(description="1-64 letters, digits, '.', '_' or '-'; also its MQTT identity")
    labels: dict[str, str] = Field(default_factory=dict)
    auth: AuthKind = Field(default="certificate", description="client certificate, or broker username and password")
    csr: str | None = Field(
        default=None,
        description="auth certificate: PEM signing request with subject CN = deviceId (the key stays with the caller)",
    )


class BrokerReloadView(ApiModel):
    reloaded: bool = Field(description="the hub reloaded the broker itself")
    message: str = Field(description="what happened, or what to run")


class DeviceRegistration(ApiModel):
    device: DeviceView
    bundle: BootstrapBundle = Field(
        description="the bootstrap bundle, without clientKey (the caller holds it); a password appears only here"
    )
    broker: BrokerReloadView | None = Field(default=None, description="auth password: the broker's password file")


class LabelsUpdate(ApiModel):
    set: dict[str, str] = Field(default_factory=dict, description="labels to add or change")
    remove: list[str] = Field(default_factory=list, description="label keys to remove")


class DeviceRevoked(ApiModel):
    device: DeviceView
    broker: BrokerReloadView


class DeviceDeleted(ApiModel):
    device_id: str
    broker: BrokerReloadView


class MethodCall(ApiModel):
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=300)


# tokens ----------------------------------------------------------------------------------------
class TokenCreate(ApiModel):
    name: str = Field(
        pattern=TOKEN_NAME_PATTERN, description="who or what uses it, e.g. ci-reader; unique among live tokens"
    )
    role: Role
    expires_in_days: float | None = Field(
        default=None, gt=0, le=36500, description="omit for a token that never expires"
    )


class TokenView(ApiModel):
    """A token as the hub shows it: never its secret, nor the secret's hash."""

    id: str = Field(description="the public part of the token (eft_<id>_...); revoke by it")
    name: str
    role: Role
    state: TokenState
    created_at: datetime
    expires_at: datetime | None = None
    last_used: datetime | None = Field(default=None, description="to within a minute")
    revoked_at: datetime | None = None


class TokenCreated(TokenView):
    token: str = Field(description="the whole token; shown only in this answer, the hub keeps only its hash")
