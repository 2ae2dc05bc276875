"""Azure ML CLI v1 ``inferenceconfig.json`` and ``deploymentconfig.json``, as edgefleet reads them.

The Azure ML fields that make sense on a device are accepted under their Azure names (``authEnabled``
among them); edgefleet adds its own (``target``, ``accelerator``, ``runtime``, ``image``,
``restartPolicy``, ``healthProbe``, ``startupOrder``, ``listenAddress``, ``tls``). Anything else is an error naming the file and the field, with a suggestion when
the field looks like a typo, because a silently ignored typo would deploy something the user did
not ask for.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.hub.errors import ConfigError
from edgefleet.protocol.models import TLS_FILE_PATTERN, AcceleratorKind, RestartPolicy
from edgefleet.protocol.module import OPEN_ROUTES
from edgefleet.protocol.topics import check_device_id

INFERENCE_CONFIG = "inferenceconfig.json"
DEPLOYMENT_CONFIG = "deploymentconfig.json"

# Azure ML fields that exist but have no meaning on an edge device: say so instead of "unknown".
_AZURE_ONLY = {
    "condaFile": "dependencies are part of the device image; declare environment variables instead",
    "extraDockerfileSteps": "images are built outside edgefleet; set deploymentconfig.json 'image' instead",
    "baseImage": "images are built outside edgefleet; set deploymentconfig.json 'image' instead",
    "baseImageRegistry": "images are built outside edgefleet; set deploymentconfig.json 'image' instead",
    "enableGpu": "use deploymentconfig.json 'accelerator' to ask for an accelerator",
    "appInsightsEnabled": "devices report telemetry to the hub over MQTT",
    "autoScaler": "one module runs per targeted device",
    "numReplicas": "one module runs per targeted device; select devices with 'target'",
    "location": "select devices with 'target'",
    "gpuCores": "use 'accelerator' to ask for an accelerator",
    "python": "the Python environment is part of the device image",
    "docker": "set deploymentconfig.json 'runtime' and 'image' instead",
    "spark": "Spark environments do not run on devices",
    "inferencingStackVersion": "the scoring server is edgefleet's own",
}


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


def _relative(value: str, what: str) -> str:
    norm = value.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if norm.startswith("/") or not parts or ".." in parts:
        raise ValueError(f"{what} must be a relative path inside the source directory without '..'")
    return "/".join(parts)


class Environment(_ConfigModel):
    environment_variables: dict[str, str] = Field(default_factory=dict, alias="environmentVariables")


class InferenceConfig(_ConfigModel):
    entry_script: str | None = Field(default=None, alias="entryScript", description="None: serve the model no-code")
    source_directory: str | None = Field(default=None, alias="sourceDirectory")
    runtime: Literal["python"] = "python"
    environment: Environment = Field(default_factory=Environment)

    @field_validator("entry_script")
    @classmethod
    def _entry_relative(cls, v: str | None) -> str | None:
        return None if v is None else _relative(v, "entryScript")


class ResourceRequirements(_ConfigModel):
    cpu: float | None = Field(default=None, gt=0, description="CPU cores")
    memory_in_gb: float | None = Field(default=None, gt=0, alias="memoryInGB")


class Target(_ConfigModel):
    """Device selector: every label must match AND every accelerator kind must be present."""

    labels: dict[str, str] = Field(default_factory=dict)
    devices: list[str] = Field(default_factory=list, description="device ids; empty: any device")
    accelerators: list[AcceleratorKind] = Field(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _device_ids(cls, v: list[str]) -> list[str]:
        for device_id in v:
            check_device_id(device_id)
        return v


def _cpu_only() -> list[AcceleratorKind]:
    return ["cpu"]


class AcceleratorConfig(_ConfigModel):
    prefer: list[AcceleratorKind] = Field(default_factory=_cpu_only)
    required: bool = False

    @field_validator("prefer")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"lists an accelerator kind twice: {v}")
        return v


class HealthProbeConfig(_ConfigModel):
    path: str = "/v2/health/ready"
    period_seconds: float = Field(default=5.0, gt=0, alias="periodSeconds")
    timeout_seconds: float = Field(default=2.0, gt=0, alias="timeoutSeconds")
    failure_threshold: int = Field(default=3, ge=1, alias="failureThreshold")
    startup_timeout_seconds: float = Field(default=120.0, gt=0, alias="startupTimeoutSeconds")


class TlsConfig(_ConfigModel):
    """HTTPS for the scoring endpoint: files the device's owner put in the agent's TLS directory
    (``<agent data dir>/tls/``), named here; never uploaded to the hub (a private key stays on its device)."""

    certificate: str = Field(pattern=TLS_FILE_PATTERN, description="PEM certificate (chain) file name")
    key: str = Field(pattern=TLS_FILE_PATTERN, description="PEM private key file name")


class DeploymentConfig(_ConfigModel):
    compute_type: str = Field(default="edge", alias="computeType")
    container_resource_requirements: ResourceRequirements = Field(
        default_factory=ResourceRequirements, alias="containerResourceRequirements"
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    target: Target = Field(default_factory=Target)
    accelerator: AcceleratorConfig = Field(default_factory=AcceleratorConfig)
    runtime: Literal["process", "docker"] = "process"
    image: str | None = None
    restart_policy: RestartPolicy = Field(default=RestartPolicy.ALWAYS, alias="restartPolicy")
    health_probe: HealthProbeConfig = Field(default_factory=HealthProbeConfig, alias="healthProbe")
    startup_order: int = Field(default=0, ge=0, alias="startupOrder")
    auth_enabled: bool = Field(default=False, alias="authEnabled", description="scoring needs one of two keys")
    listen_address: str = Field(
        default="127.0.0.1", alias="listenAddress", description="IP the module listens on; 0.0.0.0: off-device clients"
    )
    tls: TlsConfig | None = None

    @field_validator("listen_address")
    @classmethod
    def _ip_literal(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be an IP address, e.g. 127.0.0.1 (this device only) or 0.0.0.0 (all)") from None
        return v

    @field_validator("compute_type")
    @classmethod
    def _edge_only(cls, v: str) -> str:
        if v.lower() in ("aks", "aci", "amlcompute", "local"):
            raise ValueError(
                f'computeType {v!r} deploys to an Azure ML target; edgefleet deploys to edge devices: use "edge"'
            )
        if v != "edge":
            raise ValueError(f'computeType must be "edge", got {v!r}')
        return v

    @model_validator(mode="after")
    def _image_for_docker(self) -> DeploymentConfig:
        if self.runtime == "docker" and not self.image:
            raise ValueError('runtime "docker" needs an "image"')
        return self

    @model_validator(mode="after")
    def _open_only_when_asked(self) -> DeploymentConfig:
        """An endpoint reachable from the network needs keys, unless ``authEnabled: false`` says
        in so many words that it is meant to be open; with keys, the agent's health probe must hit
        a route that answers without one."""
        if not ipaddress.ip_address(self.listen_address).is_loopback and "auth_enabled" not in self.model_fields_set:
            raise ValueError(
                f"listenAddress {self.listen_address} opens the scoring endpoint to other hosts: set "
                '"authEnabled": true (clients then send a key), or "authEnabled": false to serve it without keys'
            )
        if self.auth_enabled and self.health_probe.path not in OPEN_ROUTES:
            raise ValueError(
                f"healthProbe.path {self.health_probe.path!r} needs a key once authEnabled is true, and the agent "
                f"probes without one: use one of {', '.join(sorted(OPEN_ROUTES))}"
            )
        return self


M = TypeVar("M", bound=BaseModel)


def _unwrap(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The JSON names accepted at ``loc`` (the parent of a bad field), for did-you-mean hints."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = _unwrap(field.annotation) if field else None
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def describe_errors(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line per problem: ``<file>: <field.path>: <what is wrong>``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            if name in _AZURE_ONLY:
                what = f"not supported on edge devices ({_AZURE_ONLY[name]})"
            else:
                close = difflib.get_close_matches(name, _known_fields(model, loc[:-1]), n=1, cutoff=0.6)
                close = close or [k for k in _known_fields(model, loc[:-1]) if k.lower() == name.lower()]
                what = "unknown field" + (f" (did you mean {close[0]}?)" if close else "")
        else:
            what = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
                what += f" (got {err['input']!r})"
        lines.append(f"{source}: {where}: {what}")
    return "\n".join(lines)


def _parse(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, model, source)) from None


def parse_inference_config(data: Any, source: str = INFERENCE_CONFIG) -> InferenceConfig:
    return _parse(InferenceConfig, data, source)


def parse_deployment_config(data: Any, source: str = DEPLOYMENT_CONFIG) -> DeploymentConfig:
    return _parse(DeploymentConfig, data, source)


def read_json_file(path: Path) -> Any:
    """JSON from ``path``; a ConfigError names the file (and line) when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_inference_config(path: Path) -> InferenceConfig:
    return parse_inference_config(read_json_file(path), source=str(path))


def load_deployment_config(path: Path) -> DeploymentConfig:
    return parse_deployment_config(read_json_file(path), source=str(path))
