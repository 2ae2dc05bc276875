"""The hub's operations behind the REST API: checks across records, then store writes, then reconcile.

Kept apart from api.py so HTTP concerns (status codes, streaming) and the rules (a model in use
cannot be deleted, blobs must exist before they are referenced) stay separate. Requests come in
and answers go out as API schemas; store records stay inside (``model_view`` & co. map them).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from edgefleet.hub import schemas
from edgefleet.hub.configs import (
    DEPLOYMENT_CONFIG,
    INFERENCE_CONFIG,
    DeploymentConfig,
    DeploymentRead,
    InferenceConfig,
    read_deployment_config,
    read_inference_config,
)
from edgefleet.hub.errors import Conflict, InvalidRequest, NotFound
from edgefleet.hub.refs import check_service_name, parse_model_query
from edgefleet.hub.schemas import (
    BrokerReloadView,
    CredentialView,
    DeviceCreate,
    DeviceDeleted,
    DeviceKeyAck,
    DeviceRegistration,
    DeviceRevoked,
    DeviceView,
    KeyRotationView,
    LabelsUpdate,
    ModelCreate,
    ModelView,
    ServiceCreate,
    ServiceDeployed,
    ServiceKeys,
    ServiceUpdate,
    ServiceView,
)
from edgefleet.hub.server import rotation
from edgefleet.hub.server.artifacts import BlobStore
from edgefleet.hub.server.broker_config import BrokerReload
from edgefleet.hub.server.controller import Controller
from edgefleet.hub.server.identities import Identities
from edgefleet.hub.server.render import DeviceView as RenderDevice
from edgefleet.hub.server.render import describe_target, targets
from edgefleet.hub.server.service_state import DeviceObservation, service_status
from edgefleet.hub.server.store import CredentialRecord, DeviceRecord, FileEntry, ModelRecord, ServiceRecord, Store
from edgefleet.hub.server.store.records import ScoringKeys
from edgefleet.protocol.models import ModelRef, utcnow
from edgefleet.protocol.topics import TopicKind, check_device_id

log = logging.getLogger(__name__)


def model_view(record: ModelRecord) -> ModelView:
    return ModelView.model_validate(record.model_dump(by_alias=True))


def _stored_files(files: list[schemas.FileEntry]) -> list[FileEntry]:
    return [FileEntry(path=f.path, digest=f.digest, size=f.size) for f in files]


def _credential_view(credentials: list[CredentialRecord]) -> CredentialView | None:
    """The live credential, else the last one issued."""
    if not credentials:
        return None
    live = [c for c in credentials if c.revoked_at is None]
    c = (live or credentials)[-1]
    return CredentialView(
        kind=c.kind,
        serial=c.serial,
        fingerprint=c.fingerprint,
        issued_at=c.issued_at,
        not_after=c.not_after,
        revoked_at=c.revoked_at,
    )


def _reload_view(outcome: BrokerReload) -> BrokerReloadView:
    return BrokerReloadView(reloaded=outcome.reloaded, message=outcome.message)


def _check_labels(labels: dict[str, str]) -> None:
    for key in labels:
        if not key.strip() or "=" in key:
            raise InvalidRequest(f"label key {key!r}: must be non-empty and without '='")


def _check_path(path: str, what: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"{what} path {path!r} must be relative, '/'-separated, without '.' or '..'")


def new_scoring_key() -> str:
    """256 random bits, URL-safe base64 (43 characters): fits an Authorization header as it is."""
    return secrets.token_urlsafe(32)


def keys_for_deployment(
    auth_enabled: bool,
    existing: ScoringKeys | None,
    new_key: Callable[[], str] = new_scoring_key,
    given: tuple[str | None, str | None] = (None, None),
) -> ScoringKeys | None:
    """The keys a (re)deployed service gets: none without authEnabled; the ones its deployment
    config gives (Azure ML's ``keys``), each in place of the one it has when it is deployed again
    (clients keep working) or of a new one when auth is newly enabled."""
    if not auth_enabled:
        return None
    primary, secondary = given
    if existing is not None and primary is None and secondary is None:
        return existing
    keys = ScoringKeys(
        primary_key=primary or (existing.primary_key if existing else new_key()),
        secondary_key=secondary or (existing.secondary_key if existing else new_key()),
    )
    if keys.primary_key == keys.secondary_key:
        raise InvalidRequest(
            f"{DEPLOYMENT_CONFIG}: keys: the key given equals the service's other scoring key; the two must differ"
        )
    return keys


def rotated(keys: ScoringKeys, which: Literal["primary", "secondary"], fresh: str) -> ScoringKeys:
    """``keys`` with ``which`` replaced by ``fresh``; the other one stays valid through the rollout."""
    field = "primary_key" if which == "primary" else "secondary_key"
    return keys.model_copy(update={field: fresh})


def keys_view(keys: ScoringKeys) -> ServiceKeys:
    return ServiceKeys(primary_key=keys.primary_key, secondary_key=keys.secondary_key)


class Registry:
    def __init__(
        self, store: Store, blobs: BlobStore, controller: Controller, identities: Identities, key_path: Path
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.controller = controller
        self.identities = identities
        self.key_path = key_path

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
    def resolve_model(self, text: str) -> ModelRef:
        """``NAME:VERSION`` of a registered model, or ``NAME`` for its latest version."""
        query = parse_model_query(text)
        if query.version is not None:
            self.get_model(query.name, query.version)
            return ModelRef(name=query.name, version=query.version)
        versions = [m.version for m in self.store.list_models(query.name)]
        if not versions:
            raise NotFound(f"model {query.name} is not registered (`edgefleet model list` shows the models)")
        return ModelRef(name=query.name, version=max(versions))

    def _resolve_models(self, texts: list[str]) -> list[ModelRef]:
        refs = [self.resolve_model(m) for m in texts]
        seen = [f"{r.name}:{r.version}" for r in refs]
        twice = sorted({r for r in seen if seen.count(r) > 1})
        if twice:
            raise InvalidRequest(f"model(s) {', '.join(twice)} listed twice (NAME alone is its latest version)")
        return refs

    def deploy(self, req: ServiceCreate) -> ServiceDeployed:
        check_service_name(req.name)
        existing = self.store.get_service(req.name)
        if existing is not None and not req.overwrite:
            raise Conflict(
                f"service {req.name} already exists; delete it first, deploy with overwrite, or update it "
                f"(`edgefleet service update {req.name}`)"
            )
        refs = self._resolve_models(req.models)
        ic = read_inference_config(req.inference_config, INFERENCE_CONFIG) if req.inference_config else None
        dc = read_deployment_config(req.deployment_config, DEPLOYMENT_CONFIG) if req.deployment_config else None
        return self._put(
            req.name,
            existing,
            refs,
            ic.config if ic else InferenceConfig(),
            dc,
            req.source_files,
            (ic.warnings if ic else ()) + (dc.warnings if dc else ()),
        )

    def update(self, name: str, req: ServiceUpdate) -> ServiceDeployed:
        """Change what the request gives (models, either config, the source files), keep the rest."""
        existing = self.get_service(name)
        if all(v is None for v in (req.models, req.inference_config, req.deployment_config, req.source_files)):
            raise InvalidRequest(
                f"nothing to update for service {name}: give models, inferenceConfig, deploymentConfig or sourceFiles"
            )
        refs = self._resolve_models(req.models) if req.models is not None else list(existing.models)
        ic = read_inference_config(req.inference_config, INFERENCE_CONFIG) if req.inference_config is not None else None
        dc = (
            read_deployment_config(req.deployment_config, DEPLOYMENT_CONFIG)
            if req.deployment_config is not None
            else DeploymentRead(existing.deployment_config)
        )
        files = (
            req.source_files
            if req.source_files is not None
            else [schemas.FileEntry(path=f.path, digest=f.digest, size=f.size) for f in existing.source_files]
        )
        return self._put(
            name,
            existing,
            refs,
            ic.config if ic else existing.inference_config,
            dc,
            files,
            (ic.warnings if ic else ()) + (dc.warnings if req.deployment_config is not None else ()),
        )

    def _put(
        self,
        name: str,
        existing: ServiceRecord | None,
        refs: list[ModelRef],
        ic: InferenceConfig,
        dc: DeploymentRead | None,
        source_files: list[schemas.FileEntry],
        warnings: tuple[str, ...],
    ) -> ServiceDeployed:
        """Check and store a service as it is to run, and roll it out."""
        deployment = dc.config if dc else DeploymentConfig()
        self._check_files(source_files, f"service {name} source")
        if ic.entry_script and ic.entry_script not in {f.path for f in source_files}:
            raise InvalidRequest(
                f"{INFERENCE_CONFIG}: entryScript {ic.entry_script!r} is not among the uploaded source files "
                f"({len(source_files)} file(s)); check sourceDirectory"
            )
        given = (dc.primary_key, dc.secondary_key) if dc else (None, None)
        now = utcnow()
        record = ServiceRecord(
            name=name,
            models=refs,
            inference_config=ic,
            deployment_config=deployment,
            source_files=_stored_files(source_files),
            created=existing.created if existing else now,
            updated=now,
            keys=keys_for_deployment(deployment.auth_enabled, existing.keys if existing else None, given=given),
        )
        self.store.put_service(record)
        what = "updated" if existing else "deployed"
        log.info("%s service %s (models %s)", what, name, ", ".join(f"{r.name}:{r.version}" for r in refs))
        for line in warnings:
            log.info("service %s: %s", name, line)
        # Published before answering, so the state the caller reads next already counts the new manifests.
        self.controller.reconcile()
        view = self.service_view(record)
        return ServiceDeployed(**dict(view), warnings=list(warnings))

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
            if device.status != "registered" or not targets(service, RenderDevice.of(device)):
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
    def device_view(self, device: DeviceRecord, credentials: list[CredentialRecord] | None = None) -> DeviceView:
        desired = self.store.get_desired(device.device_id)
        if credentials is None:
            credentials = self.store.list_credentials(device.device_id)
        return DeviceView(
            **device.model_dump(by_alias=True),
            desired_generation=desired.generation if desired else None,
            telemetry=self.controller.telemetry.get(device.device_id),
            credential=_credential_view(credentials),
        )

    def device_record(self, device_id: str) -> DeviceRecord:
        device = self.store.get_device(device_id)
        if device is None:
            raise NotFound(
                f"device {device_id} is not registered (`edgefleet device register {device_id}`; "
                "`edgefleet device list` shows the fleet)"
            )
        return device

    def get_device(self, device_id: str) -> DeviceView:
        return self.device_view(self.device_record(device_id))

    def list_devices(self) -> list[DeviceView]:
        by_device: dict[str, list[CredentialRecord]] = {}
        for c in self.store.list_credentials():
            by_device.setdefault(c.device_id, []).append(c)
        return [self.device_view(d, by_device.get(d.device_id, [])) for d in self.store.list_devices()]

    def live_device(self, device_id: str) -> DeviceRecord:
        """A registered device that is not revoked (direct methods go only to those)."""
        device = self.device_record(device_id)
        if device.status != "registered":
            raise Conflict(f"device {device_id} is revoked; it is not part of the fleet any more")
        return device

    def register_device(self, req: DeviceCreate) -> DeviceRegistration:
        """Who may: admin. The device joins the fleet with the operator's labels and a new credential."""
        try:
            check_device_id(req.device_id)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        _check_labels(req.labels)
        now = utcnow()
        existing = self.store.get_device(req.device_id)
        if existing is not None and existing.status == "revoked":  # before issuing anything
            raise Conflict(
                f"device {req.device_id} is revoked; delete it (`edgefleet device delete {req.device_id}`) "
                "before registering it again"
            )
        credential, bundle = self.identities.issue(req.device_id, req.auth, req.csr, now)
        labels = req.labels if (existing is None or req.labels) else None
        device = self.store.register_device(req.device_id, labels, credential, now)
        broker = None
        if credential.kind == "password":  # the broker learns the new password from its password file
            broker = _reload_view(self.identities.sync_broker(f"device {req.device_id} was given a password"))
        what = f"certificate serial {credential.serial}" if credential.kind == "certificate" else "a password"
        log.info("registered device %s (%s)", req.device_id, what)
        self.controller.welcome(req.device_id)
        self.controller.request_reconcile()
        return DeviceRegistration(device=self.device_view(device), bundle=bundle, broker=broker)

    def update_labels(self, device_id: str, update: LabelsUpdate) -> DeviceView:
        """Who may: admin. Labels are the operator's alone; services re-target at once."""
        _check_labels(update.set)
        device = self.device_record(device_id)
        labels = {k: v for k, v in device.labels.items() if k not in update.remove}
        labels.update(update.set)
        updated = self.store.set_labels(device_id, labels)
        if updated is None:
            raise NotFound(f"device {device_id} was deleted meanwhile")
        log.info("device %s labels are now %s", device_id, labels)
        self.controller.reconcile()
        return self.device_view(updated)

    def revoke_device(self, device_id: str) -> DeviceRevoked:
        """Who may: admin. The device's credential stops working at the broker (CRL or password file,
        reloaded); it stays listed as revoked, its desired state is cleared, its reports are ignored."""
        with self.controller.reconcile_lock:  # no pass may publish to it between these two
            device = self.store.revoke_device(device_id, utcnow())
            if device is None:
                raise NotFound(f"device {device_id} is not registered (see `edgefleet device list`)")
            self.controller.clear_retained(device_id, (TopicKind.DESIRED,))
        outcome = self.identities.sync_broker(f"device {device_id} was revoked")
        log.warning("revoked device %s", device_id)
        self.controller.request_reconcile()
        return DeviceRevoked(device=self.device_view(device), broker=_reload_view(outcome))

    def delete_device(self, device_id: str) -> DeviceDeleted:
        """Who may: admin. Record, desired state and retained topics go; its credentials stay revoked."""
        with self.controller.reconcile_lock:
            if not self.store.delete_device(device_id, utcnow()):
                raise NotFound(f"device {device_id} is not registered (see `edgefleet device list`)")
            self.controller.clear_retained(device_id, (TopicKind.DESIRED, TopicKind.REPORTED, TopicKind.PRESENCE))
        outcome = self.identities.sync_broker(f"device {device_id} was deleted")
        log.warning("deleted device %s", device_id)
        self.controller.request_reconcile()
        return DeviceDeleted(device_id=device_id, broker=_reload_view(outcome))

    # the hub's key ---------------------------------------------------------------------------------
    def key_rotation(self) -> KeyRotationView:
        keys = self.controller.keys
        desired = {d.device_id: d for d in self.store.list_desired()}
        acks = rotation.rotation_status(self.store.list_devices(), desired, keys.announced)
        return KeyRotationView(
            key_id=keys.current.key_id,
            key_fingerprint=keys.current.fingerprint,
            next_key_id=keys.next.key_id if keys.next else None,
            next_key_fingerprint=keys.next.fingerprint if keys.next else None,
            devices=[DeviceKeyAck(device=a.device_id, acknowledged=a.acknowledged, reason=a.reason) for a in acks],
            complete=keys.next is not None and all(a.acknowledged for a in acks),
        )

    def start_key_rotation(self) -> KeyRotationView:
        """Who may: admin. Announce a next key to every registered device (a new generation each)."""
        with self.controller.reconcile_lock:
            rotation.start(self.controller.keys, self.key_path)
        self.controller.reconcile()
        return self.key_rotation()

    def finish_key_rotation(self, force: bool = False) -> KeyRotationView:
        """Who may: admin. Sign with the next key from now on; devices that did not acknowledge it
        (unless ``force``) would refuse every later manifest, so that is refused."""
        status = self.key_rotation()
        if status.next_key_id is None:
            raise Conflict("no hub key rotation runs; start one first (`edgefleet hub rotate-key`)")
        waiting = [d.device for d in status.devices if not d.acknowledged]
        if waiting and not force:
            raise Conflict(
                f"device(s) {', '.join(waiting)} have not acknowledged the next hub key yet; wait for them, or "
                "finish with --force (they must then be provisioned again)"
            )
        with self.controller.reconcile_lock:
            rotation.finish(self.controller.keys, self.key_path)
        self.controller.reconcile()
        return self.key_rotation()
