"""Wire models: everything hub and agent exchange, as pydantic models.

JSON on the wire uses camelCase (as Azure IoT Edge and Azure ML do); Python uses snake_case.
Desired state is validated strictly (unknown fields are an error: a typo must not be silently
ignored on a device); reports are read tolerantly so an older hub understands a newer agent.
Validation errors never quote the input (``hide_input_in_errors``): a module spec carries scoring
keys, and a rejection reason is logged and reported to the hub.

Paths in a spec are checked here, where both sides read them: an artifact lands under ``model/`` or
``src/`` of the module directory and the entry script is one of the ``src/`` artifacts, each a
relative path without ``..``, so no manifest names a file outside its module directory (the agent
checks again against symlinks when it writes the files).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from edgefleet.protocol.canonical import canonical_json, content_hash
from edgefleet.protocol.digests import is_digest
from edgefleet.protocol.topics import DEVICE_ID_PATTERN

SCHEMA_VERSION: Literal[1] = 1
MODULE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
AcceleratorKind = Literal["fpga", "opencl", "cpu"]
ARTIFACT_ROOTS = ("model", "src")  # the module directory's other entries belong to the agent
TLS_FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SCORING_KEY_PATTERN = r"^[A-Za-z0-9._~+/=-]{16,256}$"  # fits an Authorization header as is
# The largest integer every JSON reader holds exactly (an IEEE double's 53-bit mantissa: JavaScript,
# jq, most dashboards). Generations and sequence numbers stop there, far below SQLite's int64, so a
# device reporting 2**63-2 cannot make the hub compute 2**63-1 and then overflow; the hub never
# signs a generation above it (hub/server/generations.py).
MAX_SAFE_INTEGER = 2**53 - 1
MAX_GENERATION = MAX_SAFE_INTEGER
CORRELATION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form objects must be plain JSON: no NaN or Infinity (the API could not answer with them)."""
    try:
        canonical_json(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"not plain JSON: {exc}") from None
    return value


# a free-form JSON object (params, payloads, backend details); NaN/Infinity refused
JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class WireModel(BaseModel):
    """Strict base for desired state: unknown fields are rejected, values are immutable."""

    # NaN and Infinity are not JSON: a float field refuses them rather than store what no reader parses
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class TolerantWireModel(WireModel):
    """Base for reports: fields this version does not know are ignored (tolerant reader)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )


class ModuleState(str, Enum):
    """Azure ML service states, used for modules, devices' view of a service, and services."""

    TRANSITIONING = "Transitioning"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"


class RestartPolicy(str, Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"  # restart when the process/container exits non-zero
    ON_UNHEALTHY = "on-unhealthy"  # ...and when the health probe fails failure_threshold times
    ALWAYS = "always"  # restart on any exit and when unhealthy


def check_relative_path(value: str, what: str) -> str:
    """``value`` if it is a plain relative '/'-path: not absolute, no '.', '..' or empty parts, no
    backslash or control characters (which file systems and logs read differently)."""
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(f"{what} must be a relative path inside its directory, without '..': {value!r}")
    return value


class ArtifactRef(WireModel):
    """One file a module needs. Trusted only through ``digest`` inside a signed manifest."""

    path: str = Field(description="destination inside the module directory, e.g. 'model/digits.onnx'")
    digest: str
    size: int = Field(ge=0)
    url: str = Field(description="where to fetch it (hub artifact store); supports HTTP Range")

    @field_validator("digest")
    @classmethod
    def _digest(cls, v: str) -> str:
        if not is_digest(v):
            raise ValueError(f"not a sha256 digest: {v!r}")
        return v

    @field_validator("path")
    @classmethod
    def _relative_path(cls, v: str) -> str:
        check_relative_path(v, "artifact path")
        root, _, rest = v.partition("/")
        if root not in ARTIFACT_ROOTS or not rest:
            raise ValueError(f"artifact path must lie under {' or '.join(f'{r}/' for r in ARTIFACT_ROOTS)}: {v!r}")
        return v


class ModelRef(WireModel):
    name: str
    version: int = Field(ge=1)


class Resources(WireModel):
    cpu: float | None = Field(default=None, gt=0, description="CPU cores")
    memory_gb: float | None = Field(default=None, gt=0, alias="memoryInGB")


def _cpu_only() -> list[AcceleratorKind]:
    return ["cpu"]


class AcceleratorPreference(WireModel):
    prefer: list[AcceleratorKind] = Field(default_factory=_cpu_only)
    required: bool = Field(
        default=False, description="no fall-back to CPU: without a verified accelerator the module is Unschedulable"
    )

    @field_validator("prefer")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"accelerator preference lists a kind twice: {v}")
        return v


class HealthProbe(WireModel):
    path: str = "/v2/health/ready"
    interval_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    startup_timeout_s: float = Field(default=120.0, gt=0, description="Transitioning longer than this is Failed")


class ScoringAuth(WireModel):
    """The keys a scoring request must carry (``Authorization: Bearer <key>``); either one is
    accepted, so one can be rotated while clients move over to it (Azure ML's ``authEnabled``).

    Secret: shown as ``**********`` by ``repr`` and ``str`` (a logged spec does not leak them), the
    real value only in ``to_wire`` (the signed manifest, its hash) and ``get_secret_value()``.
    """

    primary_key: SecretStr
    secondary_key: SecretStr

    @field_validator("primary_key", "secondary_key")
    @classmethod
    def _key_format(cls, v: SecretStr) -> SecretStr:
        if not re.match(SCORING_KEY_PATTERN, v.get_secret_value()):
            raise ValueError("a scoring key is 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -")
        return v

    @field_serializer("primary_key", "secondary_key", when_used="always")
    def _reveal(self, v: SecretStr) -> str:
        return v.get_secret_value()

    @model_validator(mode="after")
    def _distinct(self) -> ScoringAuth:
        if self.primary_key == self.secondary_key:
            raise ValueError("the primary and secondary scoring keys must differ")
        return self

    def keys(self) -> tuple[str, str]:
        return self.primary_key.get_secret_value(), self.secondary_key.get_secret_value()


class ModuleTls(WireModel):
    """HTTPS for the module: file names in the agent's TLS directory (``<data dir>/tls/``), which
    the device's owner provisions; the agent copies them into the module directory (``tls/``)."""

    certificate: str = Field(pattern=TLS_FILE_PATTERN, description="PEM certificate (chain)")
    key: str = Field(pattern=TLS_FILE_PATTERN, description="PEM private key of the certificate")


class ModuleSpec(WireModel):
    """The desired state of one scoring module on one device."""

    name: str = Field(pattern=MODULE_NAME_PATTERN)
    service: str
    runtime: Literal["process", "docker"] = "process"
    image: str | None = Field(default=None, description="container image (docker runtime only)")
    models: list[ModelRef] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    entry_script: str | None = Field(default=None, description="path under 'src/'; None serves the model no-code")
    env: dict[str, str] = Field(default_factory=dict)
    port: int | None = Field(default=None, ge=1, le=65535, description="None: the agent picks a free port")
    resources: Resources = Field(default_factory=Resources)
    accelerator: AcceleratorPreference = Field(default_factory=AcceleratorPreference)
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    health: HealthProbe = Field(default_factory=HealthProbe)
    startup_order: int = Field(default=0, ge=0)
    listen_address: str = Field(default="127.0.0.1", description="IP address the module listens on; 0.0.0.0: all")
    tls: ModuleTls | None = Field(default=None, description="None: plain HTTP")
    auth: ScoringAuth | None = Field(default=None, description="None: scoring needs no key")

    @field_validator("entry_script")
    @classmethod
    def _entry_relative(cls, v: str | None) -> str | None:
        return None if v is None else check_relative_path(v, "entryScript")

    @field_validator("listen_address")
    @classmethod
    def _ip_literal(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"listenAddress must be an IP address such as 127.0.0.1 or 0.0.0.0: {v!r}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModuleSpec:
        if self.runtime == "docker" and not self.image:
            raise ValueError(f"module {self.name!r}: runtime 'docker' needs an image")
        paths = [a.path for a in self.artifacts]
        if len(set(paths)) != len(paths):
            raise ValueError(f"module {self.name!r}: two artifacts share a path")
        nested = sorted(p for p in paths if any(q.startswith(p + "/") for q in paths))
        if nested:
            raise ValueError(f"module {self.name!r}: artifact {nested[0]!r} is also a directory of another artifact")
        if self.entry_script is not None and f"src/{self.entry_script}" not in paths:
            raise ValueError(
                f"module {self.name!r}: entryScript {self.entry_script!r} is not one of its src/ artifacts"
            )
        return self

    def spec_hash(self) -> str:
        """Changes exactly when the module must be recreated.

        Not when only where its artifacts download from changes (their digests say what they are):
        a hub that moves, or new download grants in the URLs, restarts nothing."""
        wire = self.to_wire()
        wire["artifacts"] = [{k: v for k, v in a.items() if k != "url"} for a in wire.get("artifacts", [])]
        return content_hash(wire)


class DeviceManifest(WireModel):
    """The whole desired state of one device. Never a delta."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    generation: int = Field(ge=1, le=MAX_GENERATION, description="strictly increasing per device")
    issued_at: datetime = Field(default_factory=utcnow)
    modules: list[ModuleSpec] = Field(default_factory=list)
    next_hub_key: str | None = Field(
        default=None,
        description="key rotation: the hub's next base64 ed25519 key, announced under the current one; a device "
        "that accepts this manifest trusts manifests signed with it from then on (and the old key no more)",
    )

    def to_wire(self) -> dict[str, Any]:
        # left out when there is none, so agents from before key rotation read every other manifest
        return self.model_dump(
            mode="json", by_alias=True, exclude={"next_hub_key"} if self.next_hub_key is None else None
        )

    @model_validator(mode="after")
    def _unique_modules(self) -> DeviceManifest:
        names = [m.name for m in self.modules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"manifest lists module(s) more than once: {', '.join(dupes)}")
        # modules bind with SO_REUSEPORT (so an update can start beside the running instance):
        # two modules on one port would share its connections instead of failing to bind
        by_port: dict[int, list[str]] = {}
        for m in self.modules:
            if m.port is not None:
                by_port.setdefault(m.port, []).append(m.name)
        clashes = [f"{port} ({', '.join(names)})" for port, names in sorted(by_port.items()) if len(names) > 1]
        if clashes:
            raise ValueError(f"modules share a port: {'; '.join(clashes)}; give each module its own port")
        return self

    def module(self, name: str) -> ModuleSpec | None:
        return next((m for m in self.modules if m.name == name), None)


class SignedManifest(WireModel):
    """What is published on the desired topic: the manifest as JSON plus an ed25519 signature."""

    manifest: JsonObject
    signature: str = Field(description="base64 ed25519 signature over canonical_json(manifest)")
    key_id: str = Field(description="first 16 hex digits of sha256 of the raw public key")


class AcceleratorInfo(TolerantWireModel):
    kind: AcceleratorKind
    platform: str = ""
    device: str = ""
    device_type: str = ""
    compute_units: int = 0
    global_mem_bytes: int = 0
    board: str | None = None
    shell_id: str | None = None
    loaded_binary: str | None = None
    simulated: bool = False
    extra: JsonObject = Field(default_factory=dict, description="backend details: driver version, FPGA part")


class DeviceCapabilities(TolerantWireModel):
    labels: dict[str, str] = Field(default_factory=dict)
    accelerators: list[AcceleratorInfo] = Field(default_factory=list)
    runtimes: list[str] = Field(default_factory=lambda: ["process"])
    cpu_count: int = 0
    memory_bytes: int = 0
    arch: str = ""
    hostname: str = ""


class ModuleStatus(TolerantWireModel):
    name: str
    service: str
    state: ModuleState
    message: str = ""
    spec_hash: str | None = None
    endpoint: str | None = Field(default=None, description="base URL of the scoring server")
    backend: str | None = None
    backend_reason: str | None = None
    backend_timings_ms: dict[str, float] = Field(default_factory=dict)
    restarts: int = 0
    instance: str | None = Field(default=None, description="pid or container id")
    since: datetime = Field(default_factory=utcnow)
    rolled_back: bool = False
    limits: str | None = Field(
        default=None, description="resource limits applied and how, e.g. 'cgroup-v2: cpu 0.5 cores, memory 0.25 GB'"
    )


class ReportedState(TolerantWireModel):
    """A full snapshot of what the device observes, naming the desired generation it describes."""

    device_id: str
    generation: int = Field(
        default=0, ge=0, le=MAX_GENERATION, description="last accepted desired generation (0: none yet)"
    )
    converged: bool = Field(default=False, description="the plan for `generation` is empty")
    last_known_good: int | None = Field(default=None, ge=0, le=MAX_GENERATION)
    rolled_back_from: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GENERATION,
        description="the device gave up on this generation and serves last_known_good instead",
    )
    modules: list[ModuleStatus] = Field(default_factory=list)
    capabilities: DeviceCapabilities = Field(default_factory=DeviceCapabilities)
    rejected: str | None = Field(default=None, description="why the last manifest was refused, if it was")
    agent_version: str = ""
    seq: int = Field(default=0, ge=0, le=MAX_SAFE_INTEGER, description="increases with every report of one agent run")
    reported_at: datetime = Field(default_factory=utcnow)


class PresenceState(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class Presence(TolerantWireModel):
    device_id: str
    state: PresenceState
    agent_version: str = ""
    at: datetime | None = None


class Telemetry(TolerantWireModel):
    device_id: str
    at: datetime = Field(default_factory=utcnow)
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    modules: dict[str, dict[str, float]] = Field(default_factory=dict)


DirectMethodName = Literal["ping", "restart-module", "logs"]


class DirectMethodRequest(WireModel):
    """What the operator asked a device to do. Travels only inside a signed ``MethodCall``."""

    correlation_id: str = Field(pattern=CORRELATION_ID_PATTERN)
    method: DirectMethodName
    params: JsonObject = Field(default_factory=dict)


class MethodCall(WireModel):
    """One direct-method call, as the hub signs it: the request and whom, when and in which order.

    ``sequence`` increases strictly per device (the hub derives it from its clock in milliseconds,
    hub/server/method_sequence.py); a device runs a call only when it is greater than the last one
    it ran, so a captured call cannot be replayed, not even after the agent restarts.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    sequence: int = Field(ge=1, le=MAX_SAFE_INTEGER)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    request: DirectMethodRequest

    @model_validator(mode="after")
    def _window(self) -> MethodCall:
        if self.expires_at <= self.issued_at:
            raise ValueError("expiresAt must be after issuedAt")
        return self


class SignedMethodCall(WireModel):
    """What is published on a device's ``commands`` topic: the call as JSON plus an ed25519 signature."""

    call: JsonObject
    signature: str = Field(description="base64 ed25519 signature over canonical_json(call)")
    key_id: str = Field(description="first 16 hex digits of sha256 of the raw public key")


class DirectMethodResponse(TolerantWireModel):
    correlation_id: str = Field(pattern=CORRELATION_ID_PATTERN)
    status: int = Field(
        ge=100,
        le=599,
        description="HTTP-like: 200 ok, 400 bad request, 401 not signed by the hub, 403 not for this device, "
        "expired or replayed, 404 unknown module, 500 failure, 503 the device has no hub key yet",
    )
    payload: JsonObject = Field(default_factory=dict)
    request_digest: str | None = Field(
        default=None,
        description="sha256:<hex> of the canonical JSON of the signed call answered (request_digest()); the hub "
        "counts a response only for the exact call it published",
    )
