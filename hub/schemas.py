"""REST API request and response bodies that are not store records (camelCase JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from edgefleet.hub.server.service_state import DeviceServiceState
from edgefleet.hub.server.store.records import ApiModel, DeviceRecord, FileEntry, ModelRecord, ServiceRecord
from edgefleet.protocol.models import ModuleState, Telemetry


class ErrorBody(ApiModel):
    error: str = Field(description="what was wrong, where, and what to do")


class HubInfo(ApiModel):
    version: str
    public_key: str = Field(description="base64 raw ed25519 public key; agents pin it on first start")
    key_id: str
    broker_url: str
    broker_connected: bool


class ModelCreate(ApiModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    files: list[FileEntry] = Field(min_length=1, description="each file's blob must be uploaded first")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class ServiceCreate(ApiModel):
    name: str = Field(description="lowercase letters, digits and '-'; also the module name on devices")
    models: list[str] = Field(min_length=1, description="NAME:VERSION of registered models")
    inference_config: dict[str, Any] | None = Field(default=None, description="inferenceconfig.json as is")
    deployment_config: dict[str, Any] | None = Field(default=None, description="deploymentconfig.json as is")
    source_files: list[FileEntry] = Field(default_factory=list, description="paths relative to sourceDirectory")
    overwrite: bool = Field(default=False, description="replace a service of the same name")


class ServiceView(ServiceRecord):
    state: ModuleState
    reason: str = ""
    target: str = Field(description="the device selector in words")
    devices: list[DeviceServiceState] = Field(default_factory=list)


class DeviceView(DeviceRecord):
    desired_generation: int | None = None
    telemetry: Telemetry | None = None


class MethodCall(ApiModel):
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=300)


class ModelList(ApiModel):
    models: list[ModelRecord]
