"""The hub's operations behind the REST API: checks across records, then store writes, then reconcile.

Kept apart from api.py so HTTP concerns (status codes, streaming) and the rules (a model in use
cannot be deleted, blobs must exist before they are referenced) stay separate. Requests come in
and answers go out as API schemas; store records stay inside (``model_view`` & co. map them).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Literal

from edgefleet.hub import schemas
from edgefleet.hub.configs import (
    DEPLOYMENT_CONFIG,
    INFERENCE_CONFIG,
    DeploymentConfig,
    InferenceConfig,
    parse_deployment_config,
    parse_inference_config,
)
from edgefleet.hub.errors import Conflict, InvalidRequest, NotFound
from edgefleet.hub.refs import parse_model_ref
from edgefleet.hub.schemas import DeviceView, ModelCreate, ModelView, ServiceCreate, ServiceKeys, ServiceView
from edgefleet.hub.server.artifacts import BlobStore
from edgefleet.hub.server.controller import Controller
from edgefleet.hub.server.render import DeviceView as RenderDevice
from edgefleet.hub.server.render import describe_target, targets
from edgefleet.hub.server.service_state import DeviceObservation, service_status
from edgefleet.hub.server.store import DeviceRecord, FileEntry, ModelRecord, ServiceRecord, Store
from edgefleet.hub.server.store.records import ScoringKeys
from edgefleet.protocol.models import MODULE_NAME_PATTERN, utcnow

log = logging.getLogger(__name__)


def model_view(record: ModelRecord) -> ModelView:
    return ModelView.model_validate(record.model_dump(by_alias=True))


def _stored_files(files: list[schemas.FileEntry]) -> list[FileEntry]:
    return [FileEntry(path=f.path, digest=f.digest, size=f.size) for f in files]


def _check_path(path: str, what: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"{what} path {path!r} must be relative, '/'-separated, without '.' or '..'")


def new_scoring_key() -> str:
    """256 random bits, URL-safe base64 (43 characters): fits an Authorization header as it is."""
    return secrets.token_urlsafe(32)


def keys_for_deployment(
    auth_enabled: bool, existing: ScoringKeys | None, new_key: Callable[[], str] = new_scoring_key
) -> ScoringKeys | None:
    """The keys a (re)deployed service gets: none without authEnabled; the ones it has when it is
    deployed again (clients keep working); two new ones when auth is newly enabled."""
    if not auth_enabled:
        return None
    if existing is not None:
        return existing
    return ScoringKeys(primary_key=new_key(), secondary_key=new_key())


def rotated(keys: ScoringKeys, which: Literal["primary", "secondary"], fresh: str) -> ScoringKeys:
    """``keys`` with ``which`` replaced by ``fresh``; the other one stays valid through the rollout."""
    field = "primary_key" if which == "primary" else "secondary_key"
    return keys.model_copy(update={field: fresh})


def keys_view(keys: ScoringKeys) -> ServiceKeys:
    return ServiceKeys(primary_key=keys.primary_key, secondary_key=keys.secondary_key)


class Registry:
    def __init__(self, store: Store, blobs: BlobStore, controller: Controller) -> None:
        self.store = store
        self.blobs = blobs
        self.controller = controller

    def _check_files(self, files: list[schemas.FileEntry], what: str) -> None:
        paths = [f.path for f in files]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise InvalidRequest(f"{what}: file path(s) listed twice: {', '.join(dupes)}")
        for f in files:
            _check_path(f.path, what)
            if not self.blobs.exists(f.digest):
                raise InvalidRequest(
                    f"{what} file {f.path}: blob {f.digest} is not uploaded; PUT it to /api/v1/blobs first"
                )
            actual = self.blobs.size(f.digest)
            if actual != f.size:
                raise InvalidRequest(
                    f"{what} file {f.path}: size {f.size} given, but blob {f.digest} has {actual} bytes"
                )

    # models ------------------------------------------------------------------------------------
    def register_model(self, req: ModelCreate) -> ModelView:
        self._check_files(req.files, f"model {req.name}")
        record = self.store.create_model(req.name, _stored_files(req.files), req.tags, req.description)
        log.info("registered model %s:%d (%d file(s))", record.name, record.version, len(record.files))
        return model_view(record)

    def list_models(self, name: str | None = None) -> list[ModelView]:
        return [model_view(m) for m in self.store.list_models(name)]

    def get_model(self, name: str, version: int) -> ModelRecord:
        record = self.store.get_model(name, version)
        if record is None:
            known = [m.version for m in self.store.list_models(name)]
            hint = f"known versions: {', '.join(map(str, known))}" if known else "no version of it is registered"
            raise NotFound(f"model {name}:{version} does not exist ({hint})")
        return record

    def delete_model(self, name: str, version: int) -> None:
        self.get_model(name, version)
        users = [
            s.name for s in self.store.list_services() if any(m.name == name and m.version == version for m in s.models)
        ]
        if users:
            raise Conflict(
                f"model {name}:{version} is used by service(s) {', '.join(users)}; delete or redeploy them first"
            )
        self.store.delete_model(name, version)

    # services ----------------------------------------------------------------------------------
    def deploy(self, req: ServiceCreate) -> ServiceView:
        if not re.match(MODULE_NAME_PATTERN, req.name):
            raise InvalidRequest(
                f"service name {req.name!r}: use 1-63 lowercase letters, digits and '-', starting and ending "
                "with a letter or digit (it names the module on every device)"
            )
        existing = self.store.get_service(req.name)
        if existing is not None and not req.overwrite:
            raise Conflict(f"service {req.name} already exists; delete it first or deploy with overwrite")
        refs = [parse_model_ref(m) for m in req.models]
        for ref in refs:
            self.get_model(ref.name, ref.version)
        ic = (
            parse_inference_config(req.inference_config, INFERENCE_CONFIG)
            if req.inference_config
            else InferenceConfig()
        )
        dc = (
            parse_deployment_config(req.deployment_config, DEPLOYMENT_CONFIG)
            if req.deployment_config
            else DeploymentConfig()
        )
        self._check_files(req.source_files, f"service {req.name} source")
        if ic.entry_script and ic.entry_script not in {f.path for f in req.source_files}:
            raise InvalidRequest(
                f"{INFERENCE_CONFIG}: entryScript {ic.entry_script!r} is not among the uploaded source files "
                f"({len(req.source_files)} file(s)); check sourceDirectory"
            )
        now = utcnow()
        record = ServiceRecord(
            name=req.name,
            models=refs,
            inference_config=ic,
            deployment_config=dc,
            source_files=_stored_files(req.source_files),
            created=existing.created if existing else now,
            updated=now,
            keys=keys_for_deployment(dc.auth_enabled, existing.keys if existing else None),
        )
        self.store.put_service(record)
        log.info("deployed service %s (models %s)", record.name, ", ".join(req.models))
        # Published before answering, so the state the caller reads next already counts the new manifests.
        self.controller.reconcile()
        return self.service_view(record)

    def get_service(self, name: str) -> ServiceRecord:
        record = self.store.get_service(name)
        if record is None:
            raise NotFound(f"service {name} does not exist (see `edgefleet service list`)")
        return record

    def _keys_of(self, name: str) -> tuple[ServiceRecord, ScoringKeys]:
        record = self.get_service(name)
        if record.keys is None:
            raise Conflict(
                f'service {name} has no scoring keys: its deploymentconfig.json does not set "authEnabled": true '
                "(deploy it again with authEnabled to get keys)"
            )
        return record, record.keys

    def service_keys(self, name: str) -> ServiceKeys:
        return keys_view(self._keys_of(name)[1])

    def regenerate_key(self, name: str, which: Literal["primary", "secondary"]) -> ServiceKeys:
        """Replace one key and roll the change out; until a device runs the new spec, its module
        accepts the old key, and the other key works on every device throughout."""
        record, keys = self._keys_of(name)
        record = record.model_copy(update={"keys": rotated(keys, which, new_scoring_key()), "updated": utcnow()})
        self.store.put_service(record)
        log.info("regenerated the %s scoring key of service %s; rolling it out", which, name)
        self.controller.reconcile()
        assert record.keys is not None
        return keys_view(record.keys)

    def delete_service(self, name: str) -> None:
        self.get_service(name)
        self.store.delete_service(name)
        log.info("deleted service %s", name)
        self.controller.reconcile()

    def service_view(self, service: ServiceRecord, devices: list[DeviceRecord] | None = None) -> ServiceView:
        devices = self.store.list_devices() if devices is None else devices
        desired = {d.device_id: d for d in self.store.list_desired()}
        observations = []
        for device in devices:
            if not targets(service, RenderDevice.of(device.device_id, device.capabilities)):
                continue
            record = desired.get(device.device_id)
            observations.append(
                DeviceObservation(
                    device_id=device.device_id,
                    online=None if device.presence == "unknown" else device.presence == "online",
                    report=device.last_report,
                    published_generation=record.generation if record else None,
                    published_modules=frozenset(str(m.get("name")) for m in record.modules) if record else frozenset(),
                )
            )
        target = describe_target(service)
        status = service_status(service.name, observations, target)
        return ServiceView(
            **service.model_dump(by_alias=True, exclude={"keys"}),  # keys only through service_keys
            state=status.state,
            reason=status.reason,
            target=target,
            devices=status.devices,
        )

    def list_service_views(self) -> list[ServiceView]:
        devices = self.store.list_devices()
        return [self.service_view(s, devices) for s in self.store.list_services()]

    # devices -----------------------------------------------------------------------------------
    def device_view(self, device: DeviceRecord) -> DeviceView:
        desired = self.store.get_desired(device.device_id)
        return DeviceView(
            **device.model_dump(by_alias=True),
            desired_generation=desired.generation if desired else None,
            telemetry=self.controller.telemetry.get(device.device_id),
        )

    def get_device(self, device_id: str) -> DeviceView:
        device = self.store.get_device(device_id)
        if device is None:
            raise NotFound(f"device {device_id} is unknown (devices appear when their agent first reports)")
        return self.device_view(device)

    def list_devices(self) -> list[DeviceView]:
        return [self.device_view(d) for d in self.store.list_devices()]
