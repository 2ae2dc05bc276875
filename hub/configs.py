"""Azure ML CLI v1 ``inferenceconfig.json`` and ``deploymentconfig.json``, as edgefleet reads them.

A field is one of four kinds:

* edgefleet's own: ``target``, ``accelerator``, ``runtime``, ``image``, ``restartPolicy``,
  ``healthProbe``, ``startupOrder``, ``listenAddress``, ``tls``;
* Azure ML's, with a meaning on a device: applied under its Azure name (``authEnabled``,
  ``containerResourceRequirements``, ``port``), or translated to edgefleet's field of the same
  meaning (``sslEnabled`` + ``sslCertificate`` + ``sslKey`` -> ``tls``, ``livenessProbeRequirements``
  -> ``healthProbe``, ``keys`` -> the service's scoring keys), or kept with the service where the
  scoring module does not enforce it yet (``scoringTimeoutMs``, ...: said so in a warning);
* Azure ML's, without a meaning on a device (``autoScaler``, ``appInsightsEnabled``, ``computeType``
  ``"AKS"``, an environment's conda packages, ...): accepted, with one warning line each that names
  the field and why it does not apply; a field that asks for nothing (``null``, ``false``, empty)
  is accepted silently;
* anything else: an error naming the file and the field, with a suggestion when the field looks
  like a typo, because a silently ignored typo would deploy something the user did not ask for.

The Python SDK's keyword names (``cpu_cores``, ``memory_gb``, ``auth_enabled``, ... of
``AciWebservice.deploy_configuration`` and friends, ``entry_script`` of ``InferenceConfig``) are
read as the JSON names they stand for. Reading is pure: data in, a config and its warnings out
(``read_*``); only ``load_*`` and ``read_json_file`` touch files.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Generic, Literal, TypeGuard, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.hub.errors import ConfigError
from edgefleet.protocol.models import SCORING_KEY_PATTERN, TLS_FILE_PATTERN, AcceleratorKind, RestartPolicy
from edgefleet.protocol.module import OPEN_ROUTES
from edgefleet.protocol.topics import check_device_id

INFERENCE_CONFIG = "inferenceconfig.json"
DEPLOYMENT_CONFIG = "deploymentconfig.json"

# computeType values of Azure ML's deployment targets, lowercased (the SDK compares them so)
AZURE_TARGETS = ("local", "aci", "aks", "aksendpoint")


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
    # Azure ML's request limits: kept with the service; the scoring module does not enforce them yet
    # (protocol.ModuleSpec has no field for them), and every config that sets one is told so.
    scoring_timeout_ms: int | None = Field(
        default=None, gt=0, alias="scoringTimeoutMs", description="kept, not enforced yet"
    )
    max_concurrent_requests_per_container: int | None = Field(
        default=None, ge=1, alias="maxConcurrentRequestsPerContainer", description="kept, not enforced yet"
    )
    max_queue_wait_ms: int | None = Field(
        default=None, ge=0, alias="maxQueueWaitMs", description="kept, not enforced yet"
    )

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
        if v != "edge":  # Azure ML's targets were read as "edge" already (read_deployment_config)
            raise ValueError(
                'computeType must be "edge", or the local, ACI or AKS of a file written for Azure ML '
                "(AmlCompute and other training targets do not serve models)"
            )
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
Loc = tuple[str, ...]


@dataclass(frozen=True)
class Read(Generic[M]):
    """A config file as edgefleet reads it: the config, and one line per Azure ML field it did not
    apply as written (``<file>: <field>: <why>``)."""

    config: M
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentRead(Read[DeploymentConfig]):
    """Also the scoring keys the file gives (Azure ML's ``keys``): secrets, so never part of the
    config a service shows; the hub keeps them as the service's keys."""

    primary_key: str | None = field(default=None, repr=False)
    secondary_key: str | None = field(default=None, repr=False)


# Azure ML fields ----------------------------------------------------------------------------------
def _idle(value: Any) -> bool:
    """Asks for nothing: null, false, 0, an empty string, list or object, or an object of such values."""
    if value is None or value is False or value == "" or value == [] or value == {}:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return True
    if isinstance(value, dict):
        return all(_idle(v) for v in value.values())
    return False


def _any(_value: Any) -> bool:
    return True


def _is(default: Any) -> Callable[[Any], bool]:
    """Idle when unset or the Azure ML default (which asks for nothing edgefleet would not do)."""
    return lambda value: _idle(value) or value == default


@dataclass(frozen=True)
class _Cloud:
    """An Azure ML field without a meaning on a device: accepted with a warning unless ``idle``."""

    why: str
    idle: Callable[[Any], bool] = _idle
    fields: frozenset[str] = frozenset()  # its fields, when it is an object: others are typos


def _cloud(why: str, idle: Callable[[Any], bool] = _idle, fields: tuple[str, ...] = ()) -> _Cloud:
    return _Cloud(why, idle, frozenset(fields))


_GPU = "edgefleet schedules no GPUs; ask for an FPGA or OpenCL device with deploymentconfig.json 'accelerator'"
_NO_IMAGE = (
    'edgefleet builds no images; to run in a container, set deploymentconfig.json "runtime": "docker" and '
    'an "image" that holds the packages'
)
_PACKAGES = (
    'the module runs with the Python packages already on the device (the agent\'s Python, or with "runtime": '
    '"docker" the image\'s)'
)
_ONE_PER_DEVICE = "one module runs on each device 'target' selects; to run more copies, target more devices"
_CMK = "customer-managed keys (Azure Key Vault) do not apply: devices fetch artifacts by digest, in signed manifests"
_VNET = "devices join no Azure virtual network; they reach the hub and the broker over their own network"
_AKS_ENDPOINT = "AKS endpoint versions and traffic splits do not exist; deploy a second service to try a version"
_NO_METADATA = "a service keeps no {what} in edgefleet"

# The SDK's keyword names (AciWebservice / AksWebservice / LocalWebservice.deploy_configuration) and
# the JSON paths the v1 CLI reads for them; port, location, namespace, tags, properties and
# description have one name in both.
_DEPLOY_KEYWORDS: Mapping[str, Loc] = {
    "cpu_cores": ("containerResourceRequirements", "cpu"),
    "memory_gb": ("containerResourceRequirements", "memoryInGB"),
    "cpu_cores_limit": ("containerResourceRequirements", "cpuLimit"),
    "memory_gb_limit": ("containerResourceRequirements", "memoryInGBLimit"),
    "gpu_cores": ("gpuCores",),
    "auth_enabled": ("authEnabled",),
    "token_auth_enabled": ("tokenAuthEnabled",),
    "primary_key": ("keys", "primaryKey"),
    "secondary_key": ("keys", "secondaryKey"),
    "ssl_enabled": ("sslEnabled",),
    "ssl_cert_pem_file": ("sslCertificate",),
    "ssl_key_pem_file": ("sslKey",),
    "ssl_cname": ("cname",),
    "dns_name_label": ("dnsNameLabel",),
    "enable_app_insights": ("appInsightsEnabled",),
    "scoring_timeout_ms": ("scoringTimeoutMs",),
    "replica_max_concurrent_requests": ("maxConcurrentRequestsPerContainer",),
    "max_request_wait_time": ("maxQueueWaitMs",),
    "num_replicas": ("numReplicas",),
    "autoscale_enabled": ("autoScaler", "autoscaleEnabled"),
    "autoscale_min_replicas": ("autoScaler", "minReplicas"),
    "autoscale_max_replicas": ("autoScaler", "maxReplicas"),
    "autoscale_refresh_seconds": ("autoScaler", "refreshPeriodInSeconds"),
    "autoscale_target_utilization": ("autoScaler", "targetUtilization"),
    "collect_model_data": ("dataCollection", "storageEnabled"),
    "period_seconds": ("livenessProbeRequirements", "periodSeconds"),
    "initial_delay_seconds": ("livenessProbeRequirements", "initialDelaySeconds"),
    "timeout_seconds": ("livenessProbeRequirements", "timeoutSeconds"),
    "success_threshold": ("livenessProbeRequirements", "successThreshold"),
    "failure_threshold": ("livenessProbeRequirements", "failureThreshold"),
    "compute_target_name": ("computeTargetName",),
    "cmk_vault_base_url": ("vaultBaseUrl",),
    "cmk_key_name": ("keyName",),
    "cmk_key_version": ("keyVersion",),
    "vnet_name": ("vnetName",),
    "subnet_name": ("subnetName",),
    "version_name": ("versionName",),
    "traffic_percentile": ("trafficPercentile",),
}

_DEPLOY_CLOUD: Mapping[str, _Cloud] = {
    "appInsightsEnabled": _cloud(
        "devices report telemetry to the hub over MQTT (`edgefleet device show`); there is no Application Insights"
    ),
    "autoScaler": _cloud(
        _ONE_PER_DEVICE,
        idle=lambda v: _idle(v) or (isinstance(v, dict) and v.get("autoscaleEnabled") is False),
        fields=("autoscaleEnabled", "minReplicas", "maxReplicas", "refreshPeriodInSeconds", "targetUtilization"),
    ),
    "numReplicas": _cloud(_ONE_PER_DEVICE),
    "dataCollection": _cloud(
        "model inputs and predictions are not collected to Azure Blob storage", fields=("storageEnabled",)
    ),
    "gpuCores": _cloud(_GPU),
    "location": _cloud("there are no Azure regions: select devices with 'target'"),
    "dnsNameLabel": _cloud("no DNS name is made: each device reports its endpoint (`edgefleet service show`)"),
    "cname": _cloud("no DNS record is made: clients use the endpoint each device reports, which its certificate names"),
    "namespace": _cloud("there is no Kubernetes namespace: the module is named after the service on each device"),
    "computeTargetName": _cloud("there are no compute targets: select devices with 'target'"),
    "tags": _cloud(_NO_METADATA.format(what="tags") + "; label devices and select them with 'target'"),
    "properties": _cloud(_NO_METADATA.format(what="properties")),
    "description": _cloud(_NO_METADATA.format(what="description")),
    "vaultBaseUrl": _cloud(_CMK),
    "keyName": _cloud(_CMK),
    "keyVersion": _cloud(_CMK),
    "vnetName": _cloud(_VNET),
    "subnetName": _cloud(_VNET),
    "versionName": _cloud(_AKS_ENDPOINT),
    "trafficPercentile": _cloud(_AKS_ENDPOINT),
}

_RESOURCES_CLOUD: Mapping[str, _Cloud] = {
    "cpuLimit": _cloud("there is no separate limit: 'cpu' is what the device must have free and the module's limit"),
    "memoryInGBLimit": _cloud(
        "there is no separate limit: 'memoryInGB' is what the device must have free and the module's limit"
    ),
    "gpu": _cloud(_GPU),
}

_LIVENESS_FIELDS = ("periodSeconds", "initialDelaySeconds", "timeoutSeconds", "successThreshold", "failureThreshold")
_KEYS_FIELDS = ("primaryKey", "secondaryKey")
_SSL_FIELDS = ("sslEnabled", "sslCertificate", "sslKey")
# Azure ML's request limits, kept with the service (DeploymentConfig) but not enforced yet
_KEPT = {
    "scoringTimeoutMs": "scoring timeout",
    "maxConcurrentRequestsPerContainer": "limit on concurrent requests",
    "maxQueueWaitMs": "request queue",
}
_DEPLOY_AZURE = frozenset(
    {"computeType", "containerResourceRequirements", "port", "authEnabled", "tokenAuthEnabled", "keys"}
    | set(_SSL_FIELDS)
    | {"livenessProbeRequirements"}
    | set(_KEPT)
    | set(_DEPLOY_CLOUD)
)

# InferenceConfig's keyword names and the JSON names the v1 CLI reads for them
_INFERENCE_KEYWORDS: Mapping[str, Loc] = {
    "entry_script": ("entryScript",),
    "source_directory": ("sourceDirectory",),
    "conda_file": ("condaFile",),
    "extra_docker_file_steps": ("extraDockerfileSteps",),
    "enable_gpu": ("enableGpu",),
    "base_image": ("baseImage",),
    "base_image_registry": ("baseImageRegistry",),
    "cuda_version": ("cudaVersion",),
}

_INFERENCE_CLOUD: Mapping[str, _Cloud] = {
    "condaFile": _cloud(f"its packages are not installed; {_PACKAGES}"),
    "extraDockerfileSteps": _cloud(_NO_IMAGE),
    "baseImage": _cloud(_NO_IMAGE),
    "baseImageRegistry": _cloud(_NO_IMAGE),
    "enableGpu": _cloud(_GPU),
    "cudaVersion": _cloud(_GPU),
    "description": _cloud(_NO_METADATA.format(what="description")),
    # ContainerImage.image_configuration's fields, in inference configs of older SDKs
    "schemaFile": _cloud("the scoring server makes no Swagger schema from a schema file"),
    "dependencies": _cloud("files are uploaded from sourceDirectory; list none apart"),
}

_REGISTRY_FIELDS = ("address", "username", "password")
_ENVIRONMENT_CLOUD: Mapping[str, Mapping[str, _Cloud]] = {
    "python": {
        "userManagedDependencies": _cloud("", idle=_any),  # edgefleet never installs packages: always "user managed"
        "interpreterPath": _cloud("the agent starts the module with its own Python", idle=_is("python")),
        "condaDependencies": _cloud(f"not installed: {_PACKAGES}"),  # warned with its packages
        "condaDependenciesFile": _cloud(f"not installed: {_PACKAGES}"),
        "baseCondaEnvironment": _cloud(f"not used: {_PACKAGES}"),
    },
    "docker": {
        "enabled": _cloud(_NO_IMAGE),
        "baseImage": _cloud(_NO_IMAGE),
        "baseDockerfile": _cloud(_NO_IMAGE),
        "baseImageRegistry": _cloud(_NO_IMAGE, fields=_REGISTRY_FIELDS),
        "platform": _cloud(_NO_IMAGE),
        "buildContext": _cloud(_NO_IMAGE),
        "arguments": _cloud("the agent starts the container; it takes no docker run arguments"),
        "sharedVolumes": _cloud("", idle=_any),
        "shmSize": _cloud("the agent starts the container with Docker's default shared memory"),
    },
    "spark": {
        "repositories": _cloud("Spark does not run on devices"),
        "packages": _cloud("Spark does not run on devices"),
        "precachePackages": _cloud("", idle=_any),
    },
    "databricks": {
        name: _cloud("Databricks libraries are not installed on devices")
        for name in ("mavenLibraries", "pypiLibraries", "rcranLibraries", "jarLibraries", "eggLibraries")
    },
}
_ENVIRONMENT_TOP: Mapping[str, _Cloud] = {
    "r": _cloud("R environments do not run on devices"),
    "inferencingStackVersion": _cloud("the scoring server is edgefleet's own"),
}
_INFERENCE_AZURE = frozenset({"entryScript", "sourceDirectory", "runtime", "environment"} | set(_INFERENCE_CLOUD))

# Names accepted at a place, beyond the model's own fields: for did-you-mean suggestions
_AZURE_NAMES: Mapping[tuple[str, Loc], frozenset[str]] = {
    ("DeploymentConfig", ()): _DEPLOY_AZURE,
    ("DeploymentConfig", ("containerResourceRequirements",)): frozenset(_RESOURCES_CLOUD),
    ("InferenceConfig", ()): _INFERENCE_AZURE,
    ("InferenceConfig", ("environment",)): frozenset(
        {"name", "version"} | set(_ENVIRONMENT_CLOUD) | set(_ENVIRONMENT_TOP)
    ),
}

_MISSING: Any = object()


def _dotted(loc: Loc) -> str:
    return ".".join(loc)


def _suggestion(name: str, known: list[str], keywords: list[str] | None = None) -> str:
    """The accepted name ``name`` is likely a typo of: the same but for case, else the closest JSON
    name, else the closest SDK keyword name."""
    keywords = keywords or []
    close = [k for k in known + keywords if k.lower() == name.lower()]
    close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(name, keywords, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """One config file on its way to edgefleet's model: the data the model reads, what was said
    about it, and where each translated field came from (errors name the field as the user wrote it)."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = copy.deepcopy(data)
        self.source = source
        self.warnings: list[str] = []
        self.problems: list[str] = []
        self.origins: dict[Loc, str] = {}

    def where(self, loc: Loc) -> str:
        """The field now at ``loc`` as the user wrote it."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origins:
                return _dotted((self.origins[loc[:n]], *loc[n:]))
        return _dotted(loc) or "(top level)"

    def warn(self, loc: Loc, text: str) -> None:
        self.warnings.append(f"{self.source}: {self.where(loc)}: {text}")

    def problem(self, loc: Loc, text: str) -> None:
        self.problems.append(f"{self.source}: {self.where(loc)}: {text}")

    def get(self, loc: Loc) -> Any:
        node: Any = self.data
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def pop(self, loc: Loc) -> Any:
        parent = self.get(loc[:-1]) if len(loc) > 1 else self.data
        if not isinstance(parent, dict):
            return _MISSING
        return parent.pop(loc[-1], _MISSING)

    def put(self, loc: Loc, value: Any, origin: str | None = None) -> None:
        node = self.data
        for i, part in enumerate(loc[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                self.problem(loc[: i + 1], "must be an object")
                return
            node = child
        node[loc[-1]] = value
        if origin is not None:
            self.origins[loc] = origin

    def move(self, old: Loc, new: Loc) -> None:
        """The value at ``old`` (a name the SDK uses, say) to ``new``; both given is an error."""
        value = self.pop(old)
        if value is _MISSING:
            return
        if self.get(new) is not _MISSING:
            self.problem(old, f"given twice, as {self.where(old)} and as {_dotted(new)}: keep one")
            return
        self.put(new, value, self.where(old))

    def drop_nulls(self, names: frozenset[str], loc: Loc = ()) -> None:
        """Azure ML writes null for "not set" (``"sourceDirectory": null``): read it so."""
        node = self.get(loc) if loc else self.data
        if isinstance(node, dict):
            for name in [n for n in names if n in node and node[n] is None]:
                del node[name]

    def section(self, loc: Loc) -> dict[str, Any] | None:
        """The object at ``loc``, taken out of the data; None when absent or null; a problem when
        it is not an object."""
        value = self.pop(loc)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            self.problem(loc, "must be an object")  # its value unsaid: it may be a key
            return None
        return value

    def unknown(self, loc: Loc, obj: Mapping[str, Any], known: frozenset[str] | tuple[str, ...]) -> None:
        for name in obj:
            if name not in known:
                self.problem((*loc, name), "unknown field" + _suggestion(name, sorted(known)))

    def cloud(self, loc: Loc, value: Any, spec: _Cloud) -> None:
        if spec.fields and isinstance(value, dict):
            self.unknown(loc, value, spec.fields)
        if not spec.idle(value):
            shown = (
                f" ({_shown(value)})" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
            )
            self.warn(loc, f"not applied{shown}: {spec.why}")

    def cloud_fields(self, loc: Loc, table: Mapping[str, _Cloud]) -> None:
        """Take the table's fields out of the object at ``loc``, warning about those that ask for something."""
        for name, spec in table.items():
            value = self.pop((*loc, name))
            if value is not _MISSING:
                self.cloud((*loc, name), value, spec)


# deploymentconfig.json --------------------------------------------------------------------------
def _compute_type(r: _Reader) -> None:
    value = r.get(("computeType",))
    if not isinstance(value, str) or value.lower() not in AZURE_TARGETS:
        return  # "edge", or a value the model refuses
    r.data["computeType"] = "edge"
    where = "the devices 'target' selects" if "target" in r.data else "every registered device (no 'target' given)"
    note = ""
    if value.lower() in ("aks", "aksendpoint") and "authEnabled" not in r.data:
        r.data["authEnabled"] = True
        note = '; "authEnabled" is true, as it is by default on AKS'
    r.warn(("computeType",), f"{value!r} is an Azure ML compute target; edgefleet runs the service on {where}{note}")


def _resources(r: _Reader) -> None:
    if isinstance(r.get(("containerResourceRequirements",)), dict):
        r.cloud_fields(("containerResourceRequirements",), _RESOURCES_CLOUD)


def _token_auth(r: _Reader) -> None:
    value = r.pop(("tokenAuthEnabled",))
    if value is not _MISSING and not _idle(value):
        r.problem(
            ("tokenAuthEnabled",),
            "Azure AD token authentication is not available on devices: use authEnabled (key authentication) instead",
        )


def _keys(r: _Reader) -> tuple[str | None, str | None]:
    keys = r.section(("keys",))
    if keys is None:
        return None, None
    r.unknown(("keys",), keys, _KEYS_FIELDS)
    given: list[str | None] = []
    for name in _KEYS_FIELDS:
        value = keys.get(name)
        if value is not None and not (isinstance(value, str) and re.match(SCORING_KEY_PATTERN, value)):
            r.problem(("keys", name), "a scoring key is 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -")
            value = None
        given.append(value)
    primary, secondary = given
    if primary is not None and primary == secondary:
        r.problem(("keys",), "primaryKey and secondaryKey must differ")
    return primary, secondary


def _ssl(r: _Reader) -> None:
    given = {name: r.pop((name,)) for name in _SSL_FIELDS}
    given = {name: v for name, v in given.items() if v is not _MISSING and v is not None}
    enabled = given.get("sslEnabled", False)
    if not isinstance(enabled, bool):
        r.problem(("sslEnabled",), f"must be true or false (got {_shown(enabled)})")
        return
    if not enabled:
        for name in ("sslCertificate", "sslKey"):
            if name in given:
                r.warn((name,), 'not used: HTTPS is served with "sslEnabled": true')
        return
    if r.get(("tls",)) not in (_MISSING, None):
        r.problem(("sslEnabled",), "HTTPS is set twice: give tls (edgefleet) or sslEnabled (Azure ML), not both")
        return
    names = {}
    for name in ("sslCertificate", "sslKey"):
        value = given.get(name)
        if not isinstance(value, str) or not value.strip():
            r.problem((name,), "needed with sslEnabled: the name of a PEM file in each device's agent TLS directory")
        else:
            names[name] = PurePosixPath(value.replace("\\", "/")).name
    if len(names) < 2:
        return
    r.put(("tls", "certificate"), names["sslCertificate"], r.where(("sslCertificate",)))
    r.put(("tls", "key"), names["sslKey"], r.where(("sslKey",)))
    r.warn(
        ("sslEnabled",),
        f"each device serves HTTPS with {names['sslCertificate']} and {names['sslKey']} from its agent's TLS "
        "directory (<agent data dir>/tls/), put there by the device's owner; they are not uploaded from here",
    )


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _liveness(r: _Reader) -> None:
    loc: Loc = ("livenessProbeRequirements",)
    probe = r.section(loc)
    if probe is None:
        return
    r.unknown(loc, probe, _LIVENESS_FIELDS)
    if r.get(("healthProbe",)) not in (_MISSING, None):
        if not _idle(probe):
            r.problem(loc, "the health probe is set twice: give healthProbe (edgefleet) or this (Azure ML), not both")
        return
    defaults = HealthProbeConfig()
    for name in ("periodSeconds", "timeoutSeconds", "failureThreshold"):
        if probe.get(name) is not None:
            r.put(("healthProbe", name), probe[name], r.where((*loc, name)))
    delay = probe.get("initialDelaySeconds")
    if delay is not None:
        # Kubernetes gives up on a container after initialDelaySeconds and failureThreshold failed
        # probes; the agent's equivalent is the time a module has to become ready
        given_period, given_failures = probe.get("periodSeconds"), probe.get("failureThreshold")
        period = given_period if _number(given_period) else defaults.period_seconds
        failures = given_failures if _number(given_failures) else defaults.failure_threshold
        startup = delay + failures * period if _number(delay) and delay >= 0 else delay
        r.put(("healthProbe", "startupTimeoutSeconds"), startup, r.where((*loc, "initialDelaySeconds")))
    if probe.get("successThreshold") not in (None, 1):
        r.warn((*loc, "successThreshold"), "not applied: the agent counts a module ready at its first good probe")


def _kept(r: _Reader) -> None:
    for name, what in _KEPT.items():
        value = r.get((name,))
        if value is not _MISSING:
            r.warn(
                (name,),
                f"kept with the service ({_shown(value)}), not enforced yet: this version's scoring module has "
                f"no {what}",
            )


def _read_deployment(r: _Reader) -> tuple[str | None, str | None]:
    for keyword, loc in _DEPLOY_KEYWORDS.items():
        r.move((keyword,), loc)
    r.drop_nulls(_DEPLOY_AZURE)
    _compute_type(r)
    _resources(r)
    _token_auth(r)
    keys = _keys(r)
    _ssl(r)
    _liveness(r)
    _kept(r)
    r.cloud_fields((), _DEPLOY_CLOUD)
    return keys


# inferenceconfig.json ---------------------------------------------------------------------------
def _packages(conda: Any) -> str:
    """The packages a conda specification names, for the warning that says they are not installed."""
    deps = conda.get("dependencies") if isinstance(conda, dict) else None
    if not isinstance(deps, list):
        return ""
    names: list[str] = []
    for dep in deps:
        if isinstance(dep, str):
            names.append(dep)
        elif isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            names += [str(p) for p in dep["pip"]]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f" ({shown})" if shown else ""


def _environment(r: _Reader) -> None:
    loc: Loc = ("environment",)
    if r.get(loc) is None:
        r.pop(loc)
        return
    if not isinstance(r.get(loc), dict):
        return  # the model says what is wrong with it
    r.drop_nulls(frozenset({"environmentVariables"}), loc)
    name, version = r.pop((*loc, "name")), r.pop((*loc, "version"))
    if name is not _MISSING and not _idle(name):
        of = f" version {version}" if version not in (_MISSING, None) else ""
        r.warn((*loc, "name"), f"not built: Azure ML environment {_shown(name)}{of} does not exist here; {_PACKAGES}")
    for section, table in _ENVIRONMENT_CLOUD.items():
        sub = r.section((*loc, section))
        if sub is None:
            continue
        r.unknown((*loc, section), sub, frozenset(table))
        for field_name, spec in table.items():
            if field_name in sub:
                value = sub[field_name]
                if section == "python" and field_name == "condaDependencies" and not spec.idle(value):
                    r.warn((*loc, section, field_name), f"not installed{_packages(value)}: {_PACKAGES}")
                    continue
                r.cloud((*loc, section, field_name), value, spec)
    r.cloud_fields(loc, _ENVIRONMENT_TOP)


def _read_inference(r: _Reader) -> None:
    for keyword, loc in _INFERENCE_KEYWORDS.items():
        r.move((keyword,), loc)
    r.drop_nulls(_INFERENCE_AZURE)
    runtime = r.get(("runtime",))
    if isinstance(runtime, str) and runtime.lower() == "python":
        r.data["runtime"] = "python"
    r.cloud_fields((), _INFERENCE_CLOUD)
    _environment(r)


# errors -----------------------------------------------------------------------------------------
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
        field_info = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = _unwrap(field_info.annotation) if field_info else None
    if current is None:
        return []
    names = [f.alias or n for n, f in current.model_fields.items()]
    where = tuple(str(p) for p in loc if not isinstance(p, int))
    return names + sorted(_AZURE_NAMES.get((model.__name__, where), frozenset()) - set(names))


_KEYWORD_NAMES: Mapping[str, list[str]] = {
    "DeploymentConfig": sorted(_DEPLOY_KEYWORDS),
    "InferenceConfig": sorted(_INFERENCE_KEYWORDS),
}


def describe_errors(
    exc: ValidationError, model: type[BaseModel], source: str, origins: Mapping[Loc, str] | None = None
) -> str:
    """One line per problem: ``<file>: <field.path>: <what is wrong>``, the field as the user wrote it
    (``origins``: where a translated field came from)."""
    origins = origins or {}
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        names = tuple(str(p) for p in loc)
        where = ""
        for n in range(len(names), 0, -1):
            if names[:n] in origins and all(not isinstance(p, int) for p in loc[:n]):
                rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[n:])
                where = origins[names[:n]] + rest
                break
        where = where or "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"
        if err["type"] == "extra_forbidden":
            keywords = _KEYWORD_NAMES.get(model.__name__) if len(loc) == 1 else None
            what = "unknown field" + _suggestion(str(loc[-1]), _known_fields(model, loc[:-1]), keywords)
        else:
            what = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
                what += f" (got {err['input']!r})"
        lines.append(f"{source}: {where}: {what}")
    return "\n".join(lines)


# reading ----------------------------------------------------------------------------------------
def _validate(model: type[M], r: _Reader) -> M:
    try:
        config = model.model_validate(r.data)
    except ValidationError as exc:
        raise ConfigError("\n".join([*r.problems, describe_errors(exc, model, r.source, r.origins)])) from None
    if r.problems:
        raise ConfigError("\n".join(r.problems))
    return config


def _reader(data: Any, source: str) -> _Reader:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    return _Reader(data, source)


def read_inference_config(data: Any, source: str = INFERENCE_CONFIG) -> Read[InferenceConfig]:
    """An inferenceconfig.json's data (edgefleet's or Azure ML's), with a warning per field not applied."""
    r = _reader(data, source)
    _read_inference(r)
    return Read(_validate(InferenceConfig, r), tuple(r.warnings))


def read_deployment_config(data: Any, source: str = DEPLOYMENT_CONFIG) -> DeploymentRead:
    """A deploymentconfig.json's data (edgefleet's, or Azure ML's for local, ACI or AKS), with a
    warning per field not applied, and the scoring keys it gives."""
    r = _reader(data, source)
    primary, secondary = _read_deployment(r)
    config = _validate(DeploymentConfig, r)
    if (primary or secondary) and not config.auth_enabled:
        r.warn(("keys",), 'not used: scoring keys apply with "authEnabled": true')
        primary = secondary = None
    return DeploymentRead(config, tuple(r.warnings), primary, secondary)


def parse_inference_config(data: Any, source: str = INFERENCE_CONFIG) -> InferenceConfig:
    """The config alone (its warnings dropped): for configs built in code."""
    return read_inference_config(data, source).config


def parse_deployment_config(data: Any, source: str = DEPLOYMENT_CONFIG) -> DeploymentConfig:
    """The config alone (its warnings and keys dropped): for configs built in code."""
    return read_deployment_config(data, source).config


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
    """The file's config; errors name the file. Its warnings come from the hub that applies it."""
    return read_inference_config(read_json_file(path), source=str(path)).config


def load_deployment_config(path: Path) -> DeploymentConfig:
    """The file's config; errors name the file. Its warnings come from the hub that applies it."""
    return read_deployment_config(read_json_file(path), source=str(path)).config
