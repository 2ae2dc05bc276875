"""Docker runtime: each module instance is a container on the device's Docker Engine.

The engine is the record store: a container carries labels (device, module, spec hash, generation,
port, host work directory), so ``list_instances()`` finds it again after the agent restarts and the
agent adopts it. The container name is derived from device, module and spec hash, so the engine
itself refuses a second container for the same instance.

A container gets host networking, the instance's ``model/`` and ``src/`` (and ``tls/`` for HTTPS)
bind-mounted read-only and a writable ``run/`` directory for its status file; it is configured by
environment, under the names of the module contract (``edgefleet.protocol.module``), the scoring
keys included (an engine's ``inspect`` shows them to whoever holds the Docker socket, i.e. root). Its own restart policy is "no": the
agent applies restart policies, so its counters and back-off stay the single source of truth.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig

from edgefleet.agent.errors import RuntimeFailure, RuntimeUnavailable, UnknownModule
from edgefleet.agent.observed import Instance
from edgefleet.agent.runtime.base import (
    TLS_CERT_FILE,
    TLS_DIR,
    TLS_KEY_FILE,
    Runtime,
    instance_id_for,
    module_environment_secrets,
)
from edgefleet.agent.runtime.engine import default_docker_url
from edgefleet.protocol.models import ModuleSpec
from edgefleet.protocol.module import (
    AZUREML_MODEL_DIR,
    STATUS_FILE_NAME,
    ModuleOption,
    max_request_bytes_for,
    read_status_file,
)

log = logging.getLogger(__name__)

LABEL_DEVICE = "edgefleet.device"
LABEL_MODULE = "edgefleet.module"
LABEL_SPEC = "edgefleet.spec"
LABEL_GENERATION = "edgefleet.generation"
LABEL_PORT = "edgefleet.port"
LABEL_WORKDIR = "edgefleet.workdir"

RUN_DIR = "run"  # under the instance's work directory: the container's only writable mount
CONTAINER_MODEL_DIR = "/edgefleet/model"
CONTAINER_SOURCE_DIR = "/edgefleet/src"
CONTAINER_RUN_DIR = "/edgefleet/run"
CONTAINER_TLS_DIR = "/edgefleet/tls"
LOG_MAX_SIZE = "10m"  # json-file rotation: a chatty module must not fill the device's disk
LOG_MAX_FILES = "3"

_ENGINE_ERRORS = (DockerException, requests.RequestException)


def container_name(device_id: str, module: str, spec_hash: str) -> str:
    return f"edgefleet-{device_id}-{module}-{spec_hash}"


def host_status_file(workdir: Path) -> Path:
    return workdir / RUN_DIR / STATUS_FILE_NAME


def module_environment(spec: ModuleSpec, port: int) -> dict[str, str]:
    """The container's environment: the user's ``spec.env`` under the module contract's names."""
    opt = ModuleOption
    env = dict(spec.env)
    env.update(
        {
            opt.MODEL_DIR.env: CONTAINER_MODEL_DIR,
            opt.SOURCE_DIR.env: CONTAINER_SOURCE_DIR,
            opt.MODEL_NAME.env: spec.models[0].name if spec.models else spec.name,
            opt.PORT.env: str(port),
            opt.HOST.env: spec.listen_address,  # host networking: the same address as the process runtime
            opt.ACCELERATOR.env: ",".join(spec.accelerator.prefer),
            opt.ACCELERATOR_REQUIRED.env: "true" if spec.accelerator.required else "false",
            opt.STATUS_FILE.env: f"{CONTAINER_RUN_DIR}/{STATUS_FILE_NAME}",
            opt.MAX_REQUEST_BYTES.env: str(max_request_bytes_for(spec.resources.memory_gb)),
            AZUREML_MODEL_DIR: CONTAINER_MODEL_DIR,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if spec.resources.cpu is not None:
        env[opt.CPU.env] = f"{spec.resources.cpu:g}"
    if spec.entry_script:
        env[opt.ENTRY_SCRIPT.env] = spec.entry_script
    else:
        env.pop(opt.ENTRY_SCRIPT.env, None)  # no entry script means no-code, whatever spec.env says
    if spec.tls is not None:
        env[opt.TLS_CERT.env] = f"{CONTAINER_TLS_DIR}/{TLS_CERT_FILE}"
        env[opt.TLS_KEY.env] = f"{CONTAINER_TLS_DIR}/{TLS_KEY_FILE}"
    else:
        env.pop(opt.TLS_CERT.env, None)
        env.pop(opt.TLS_KEY.env, None)
    return module_environment_secrets(env, spec)


def container_config(
    spec: ModuleSpec,
    spec_hash: str,
    port: int,
    workdir: Path,
    *,
    device_id: str,
    generation: int | None = None,
    user: str | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create`` (pure, so it can be checked without an engine)."""
    if not spec.image:
        raise RuntimeFailure(f"module {spec.name}: runtime 'docker' needs an image in its deployment config")
    labels = {
        LABEL_DEVICE: device_id,
        LABEL_MODULE: spec.name,
        LABEL_SPEC: spec_hash,
        LABEL_PORT: str(port),
        LABEL_WORKDIR: str(workdir),
    }
    if generation is not None:
        labels[LABEL_GENERATION] = str(generation)
    config: dict[str, Any] = {
        "image": spec.image,
        "name": container_name(device_id, spec.name, spec_hash),
        "labels": labels,
        "environment": module_environment(spec, port),
        "volumes": {
            str(workdir / "model"): {"bind": CONTAINER_MODEL_DIR, "mode": "ro"},
            str(workdir / "src"): {"bind": CONTAINER_SOURCE_DIR, "mode": "ro"},
            str(workdir / RUN_DIR): {"bind": CONTAINER_RUN_DIR, "mode": "rw"},
        },
        "network_mode": "host",
        "restart_policy": {"Name": "no"},
        "init": True,  # tini as PID 1: forwards SIGTERM, reaps what an entry script spawns
        "log_config": LogConfig(type="json-file", config={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES}),
    }
    if spec.tls is not None:
        config["volumes"][str(workdir / TLS_DIR)] = {"bind": CONTAINER_TLS_DIR, "mode": "ro"}
    if command:
        config["command"] = list(command)
    if user:
        config["user"] = user
    if spec.resources.cpu is not None:
        config["nano_cpus"] = int(spec.resources.cpu * 1e9)
    if spec.resources.memory_gb is not None:
        config["mem_limit"] = int(spec.resources.memory_gb * 1024**3)
    return config


def instance_from(container: Container) -> Instance | None:
    """Our view of one labelled container; None when its labels are incomplete (not ours to manage)."""
    labels = container.labels or {}
    module, spec_hash = labels.get(LABEL_MODULE), labels.get(LABEL_SPEC)
    if not module or not spec_hash:
        return None
    state = container.attrs.get("State") or {}
    running = bool(state.get("Running"))
    exited = state.get("Status") in ("exited", "dead")  # "created": never ran, so no code
    port_label = labels.get(LABEL_PORT, "")
    workdir = labels.get(LABEL_WORKDIR)
    return Instance(
        instance_id=instance_id_for(module, spec_hash),
        module=module,
        spec_hash=spec_hash,
        running=running,
        pid=int(state["Pid"]) if running and state.get("Pid") else None,
        exit_code=int(state["ExitCode"]) if exited and state.get("ExitCode") is not None else None,
        port=int(port_label) if port_label.isdigit() else None,
        status=read_status_file(host_status_file(Path(workdir))) if workdir else None,
    )


def _agent_user() -> str:
    # files the module writes into run/ then belong to the agent, which can clean them up
    return f"{os.getuid()}:{os.getgid()}"


class DockerRuntime(Runtime):
    kind = "docker"

    def __init__(
        self,
        device_id: str,
        base_url: str | None = None,
        *,
        command: list[str] | None = None,
        user: str | None = None,
        generation_of: Callable[[], int | None] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        """Connect to the engine; ``RuntimeUnavailable`` when it does not answer.

        ``command`` overrides the image's CMD for every module (None: the image's own);
        ``user`` defaults to the agent's uid:gid; ``generation_of`` labels new containers.
        """
        self.device_id = device_id
        self.base_url = base_url or default_docker_url()
        self.command = command
        self.user = user if user is not None else _agent_user()
        self._generation_of = generation_of or (lambda: None)
        try:
            self.client = docker.DockerClient(base_url=self.base_url, timeout=int(timeout_s))
            self.client.ping()
        except _ENGINE_ERRORS as exc:
            raise RuntimeUnavailable(
                f"no Docker engine answers at {self.base_url} on device {device_id}: {exc}; "
                "start Docker (or set the agent's docker_url), or deploy the module with runtime 'process'"
            ) from exc
        self._lock = threading.Lock()
        self._listener: Callable[[str], None] | None = None
        self._watcher: threading.Thread | None = None
        self._stream: Any = None
        self._closed = threading.Event()
        self._seen_running: set[str] = set()  # instance ids running at the last look (catch-up after a gap)

    # --- Runtime interface -----------------------------------------------------------------------

    def list_instances(self) -> list[Instance]:
        result = [i for i in (instance_from(c) for c in self._containers()) if i is not None]
        with self._lock:
            self._seen_running = {i.instance_id for i in result if i.running}
        return result

    def create(self, spec: ModuleSpec, spec_hash: str, port: int, workdir: Path) -> str:
        config = container_config(
            spec,
            spec_hash,
            port,
            workdir,
            device_id=self.device_id,
            generation=self._generation_of(),
            user=self.user,
            command=self.command,
        )
        iid = instance_id_for(spec.name, spec_hash)
        (workdir / RUN_DIR).mkdir(parents=True, exist_ok=True)
        self._ensure_image(spec.name, config["image"])
        existing = self._find(iid)
        if existing is not None:
            # only reachable when the engine was unreachable at observe time: the name is taken by
            # this very instance, so a running one is adopted and a stopped one made afresh
            if existing.status == "running":
                log.warning("module %s: container %s already runs; adopting it", spec.name, existing.name)
                return iid
            self._engine(lambda: existing.remove(force=True), f"remove the stale container of {iid}")
        container = self._engine(
            lambda: self.client.containers.create(**config), f"create a container for module {spec.name}"
        )
        log.info(
            "created container %s (%s) for module %s, image %s, port %d",
            container.name,
            container.short_id,
            spec.name,
            spec.image,
            port,
        )
        return iid

    def start(self, instance_id: str) -> None:
        container = self._get(instance_id)
        if container.status == "running":
            return
        workdir = container.labels.get(LABEL_WORKDIR)
        if workdir:  # a stale status must not speak for the new run
            host_status_file(Path(workdir)).unlink(missing_ok=True)
        self._engine(container.start, f"start module instance {instance_id}")
        log.info("started container %s for %s", container.name, instance_id)

    def stop(self, instance_id: str, grace_s: float) -> None:
        container = self._get(instance_id)
        if container.status != "running":
            return
        log.info("stopping container %s (%s)", container.name, instance_id)
        # the engine sends SIGTERM, then SIGKILL after the grace (whole seconds)
        self._engine(lambda: container.stop(timeout=math.ceil(grace_s)), f"stop module instance {instance_id}")

    def remove(self, instance_id: str) -> None:
        container = self._find(instance_id)
        if container is None:
            return
        if container.status == "running":
            raise RuntimeFailure(f"module instance {instance_id} is still running; stop it before removing it")
        workdir = container.labels.get(LABEL_WORKDIR)
        # force: a container the engine marked "dead" cannot be removed otherwise
        self._engine(lambda: container.remove(force=True, v=True), f"remove module instance {instance_id}")
        log.info("removed container %s (%s)", container.name, instance_id)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
            try:
                Path(workdir).parent.rmdir()  # the module's directory, once its last instance is gone
            except OSError:
                pass

    def logs(self, module: str, tail: int) -> list[str]:
        ours = [c for c in self._containers() if c.labels.get(LABEL_MODULE) == module]
        if not ours:
            raise UnknownModule(f"no container of module {module!r} on device {self.device_id}")
        ours.sort(key=lambda c: (c.status != "running", c.name))
        if tail <= 0:
            return []
        raw = self._engine(lambda: ours[0].logs(tail=tail, stdout=True, stderr=True), f"read logs of {module}")
        return raw.decode(errors="replace").splitlines()[-tail:]

    def set_exit_listener(self, listener: Callable[[str], None]) -> None:
        self._listener = listener
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"docker-events-{self.device_id}")
            self._watcher.start()

    def close(self) -> None:
        """Stop watching events and drop the connection; containers keep running."""
        self._closed.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a broken stream must not stop the shutdown
                log.debug("closing the docker event stream failed", exc_info=True)
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        self.client.close()

    # --- exit events -----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Tell the listener about every container of this device that dies, across engine restarts."""
        delay = 0.5
        while not self._closed.is_set():
            try:
                self._stream = self.client.events(
                    decode=True,
                    filters={"type": "container", "event": "die", "label": f"{LABEL_DEVICE}={self.device_id}"},
                )
                # subscribed first, then looked: deaths while the stream was down are caught up here
                with self._lock:
                    before = set(self._seen_running)
                now_running = {i.instance_id for i in self.list_instances() if i.running}
                for iid in sorted(before - now_running):
                    self._notify(iid)
                delay = 0.5
                for event in self._iter(self._stream):
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    module, spec_hash = attrs.get(LABEL_MODULE), attrs.get(LABEL_SPEC)
                    if module and spec_hash:
                        iid = instance_id_for(module, spec_hash)
                        log.info("container of %s died (exit code %s)", iid, attrs.get("exitCode", "?"))
                        with self._lock:
                            self._seen_running.discard(iid)
                        self._notify(iid)
                if not self._closed.is_set():
                    log.info("docker event stream ended (engine restarting?); reconnecting in %.1fs", delay)
            except (*_ENGINE_ERRORS, RuntimeFailure) as exc:
                if not self._closed.is_set():
                    log.warning("docker event stream lost (%s); reconnecting in %.1fs", exc, delay)
            except Exception as exc:  # urllib3 raises its own errors when the stream is cut mid-read
                if not self._closed.is_set():
                    log.warning("docker event stream failed (%r); reconnecting in %.1fs", exc, delay)
            if self._closed.wait(delay):
                break
            delay = min(delay * 2, 30.0)

    @staticmethod
    def _iter(stream: Any) -> Iterator[dict[str, Any]]:
        yield from stream

    def _notify(self, instance_id: str) -> None:
        if self._listener is None:
            return
        try:
            self._listener(instance_id)
        except Exception:  # the listener belongs to the daemon; its failure must not end the watch
            log.exception("exit listener failed for %s", instance_id)

    # --- helpers ---------------------------------------------------------------------------------

    def _engine(self, call: Callable[[], Any], what: str) -> Any:
        """Run one engine call; engine errors become the agent's errors, saying what failed."""
        try:
            return call()
        except NotFound as exc:
            raise UnknownModule(f"cannot {what} on device {self.device_id}: {_explain(exc)}") from exc
        except requests.ConnectionError as exc:
            # the engine was there and went away (a dockerd restart): temporary, unlike having no
            # engine at all (RuntimeUnavailable at connect), so the step is retried with back-off
            raise RuntimeFailure(
                f"cannot {what}: the Docker engine at {self.base_url} does not answer ({exc}); trying again"
            ) from exc
        except _ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"cannot {what} on device {self.device_id}: {_explain(exc)}") from exc

    def _containers(self) -> list[Container]:
        found: list[Container] = self._engine(
            lambda: self.client.containers.list(all=True, filters={"label": f"{LABEL_DEVICE}={self.device_id}"}),
            "list this device's containers",
        )
        return found

    def _find(self, instance_id: str) -> Container | None:
        module, _, spec_hash = instance_id.partition("@")
        name = container_name(self.device_id, module, spec_hash)
        try:
            container: Container = self._engine(lambda: self.client.containers.get(name), f"look up {instance_id}")
        except UnknownModule:
            return None
        return container

    def _get(self, instance_id: str) -> Container:
        container = self._find(instance_id)
        if container is None:
            raise UnknownModule(f"no container for module instance {instance_id} on device {self.device_id}")
        return container

    def _ensure_image(self, module: str, image: str) -> None:
        """The image must be on the device: look locally, else pull, else say how to provide it."""

        def present() -> bool:
            try:
                self.client.images.get(image)
                return True
            except ImageNotFound:
                return False

        if self._engine(present, f"look up image {image}"):
            return
        log.info("module %s: image %s is not on the device; pulling it", module, image)
        try:
            self.client.images.pull(image)
        except _ENGINE_ERRORS as exc:
            raise RuntimeFailure(
                f"module {module}: image {image!r} is not on device {self.device_id} and cannot be pulled "
                f"({_explain(exc)}); load it onto the device (docker load -i IMAGE.tar, or docker import) "
                "or make its registry reachable"
            ) from exc


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
