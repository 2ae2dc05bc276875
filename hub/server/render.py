"""Pure rendering: which devices a service targets, and the ModuleSpecs one device must run.

No I/O here: the controller feeds records in and publishes what comes out, so a given fleet
always renders to the same manifests (which is what makes "re-render, compare, publish only on
change" work).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from edgefleet.hub.errors import NotFound
from edgefleet.hub.server.grants import BlobGrants
from edgefleet.hub.server.store.records import DeviceRecord, ModelRecord, ServiceRecord
from edgefleet.protocol.models import (
    AcceleratorPreference,
    ArtifactRef,
    HealthProbe,
    ModuleSpec,
    ModuleTls,
    Resources,
    ScoringAuth,
)


@dataclass(frozen=True)
class DeviceView:
    """What rendering needs to know about a device: the operator's labels, the reported accelerators."""

    device_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    accelerator_kinds: frozenset[str] = frozenset()

    @classmethod
    def of(cls, device: DeviceRecord) -> DeviceView:
        kinds = frozenset(a.kind for a in device.capabilities.accelerators)
        return cls(device.device_id, dict(device.labels), kinds)


ModelIndex = Mapping[tuple[str, int], ModelRecord]
ArtifactUrl = Callable[[str], str]  # digest -> the URL a device downloads it from


def index_models(models: Iterable[ModelRecord]) -> dict[tuple[str, int], ModelRecord]:
    return {(m.name, m.version): m for m in models}


def targets(service: ServiceRecord, device: DeviceView) -> bool:
    """True when ``device`` matches the service's selector (ids, labels AND accelerator kinds)."""
    target = service.deployment_config.target
    if target.devices and device.device_id not in target.devices:
        return False
    if any(device.labels.get(k) != v for k, v in target.labels.items()):
        return False
    return all(kind in device.accelerator_kinds for kind in target.accelerators)


def describe_target(service: ServiceRecord) -> str:
    target = service.deployment_config.target
    parts = []
    if target.devices:
        parts.append("devices " + ", ".join(target.devices))
    if target.labels:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(target.labels.items())))
    if target.accelerators:
        parts.append("accelerators " + ", ".join(target.accelerators))
    return "; ".join(parts) or "any device"


def model_artifacts(service: ServiceRecord, models: ModelIndex, url: ArtifactUrl) -> list[ArtifactRef]:
    """Model files under ``model/<file>``; with several models ``model/<name>/<version>/<file>``."""
    refs: list[ArtifactRef] = []
    several = len(service.models) > 1
    for ref in service.models:
        record = models.get((ref.name, ref.version))
        if record is None:
            raise NotFound(f"service {service.name}: model {ref.name}:{ref.version} is not registered")
        prefix = f"model/{ref.name}/{ref.version}/" if several else "model/"
        refs += [
            ArtifactRef(path=prefix + f.path, digest=f.digest, size=f.size, url=url(f.digest)) for f in record.files
        ]
    return refs


def render_module(service: ServiceRecord, models: ModelIndex, url: ArtifactUrl) -> ModuleSpec:
    ic, dc = service.inference_config, service.deployment_config
    sources = [
        ArtifactRef(path="src/" + f.path, digest=f.digest, size=f.size, url=url(f.digest)) for f in service.source_files
    ]
    artifacts = sorted(model_artifacts(service, models, url) + sources, key=lambda a: a.path)
    probe = dc.health_probe
    return ModuleSpec(
        name=service.name,
        service=service.name,
        runtime=dc.runtime,
        image=dc.image,
        models=list(service.models),
        artifacts=artifacts,
        entry_script=ic.entry_script,
        env=dict(sorted(ic.environment.environment_variables.items())),
        port=dc.port,
        resources=Resources.model_validate(
            {
                "cpu": dc.container_resource_requirements.cpu,
                "memoryInGB": dc.container_resource_requirements.memory_in_gb,
            }
        ),
        accelerator=AcceleratorPreference(prefer=list(dc.accelerator.prefer), required=dc.accelerator.required),
        restart_policy=dc.restart_policy,
        health=HealthProbe(
            path=probe.path,
            interval_s=probe.period_seconds,
            timeout_s=probe.timeout_seconds,
            failure_threshold=probe.failure_threshold,
            startup_timeout_s=probe.startup_timeout_seconds,
        ),
        startup_order=dc.startup_order,
        listen_address=dc.listen_address,
        tls=ModuleTls(certificate=dc.tls.certificate, key=dc.tls.key) if dc.tls else None,
        auth=(
            ScoringAuth.model_validate(
                {"primaryKey": service.keys.primary_key, "secondaryKey": service.keys.secondary_key}
            )
            if service.keys is not None
            else None
        ),
    )


def render_device(
    services: Iterable[ServiceRecord], device: DeviceView, models: ModelIndex, grants: BlobGrants
) -> list[ModuleSpec]:
    """The modules ``device`` must run, ordered by name so equal inputs give equal manifests.

    Artifact URLs carry the device's download grant for each digest (grants.py)."""
    url = functools.partial(grants.url, device.device_id)
    modules = [render_module(s, models, url) for s in services if targets(s, device)]
    return sorted(modules, key=lambda m: m.name)


def modules_wire(modules: Iterable[ModuleSpec]) -> list[dict[str, object]]:
    """The form stored and compared to tell whether a device's desired state changed."""
    return [m.to_wire() for m in modules]
