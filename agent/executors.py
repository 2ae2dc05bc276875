"""Step executors: what each planned step does to the device, one function per step type.

``Executors`` is the table (in the spirit of balena-supervisor's typed ``getExecutors()``): one
field per step type, each typed with its own step, and ``run`` dispatches with a ``match`` that
must exhaust the ``Step`` union. So a step type without an executor is a mypy error in two ways:
a table without one of its fields (``Missing positional argument "probe_health" in call to
"Executors"``; tests/unit/agent/test_executors.py has mypy show it), and a step type added to
``plan.Step`` without a case here (``Argument 1 to "_no_executor" has incompatible type
"NewStep"; expected "Never"``). Executors raise the agent's errors; the plan runner decides about
retries from the error's recovery class.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeAlias, TypeVar

from edgefleet.agent.context import AgentContext
from edgefleet.agent.copying import copy_fd, fresh_directory, open_inside
from edgefleet.agent.errors import RuntimeFailure, TlsFilesMissing
from edgefleet.agent.health import probe_http
from edgefleet.agent.health_memory import after_probe, restarted
from edgefleet.agent.observed import Health
from edgefleet.agent.plan import CreateModule, FetchArtifact, ProbeHealth, RemoveModule, StartModule, Step, StopModule
from edgefleet.agent.runtime import instance_id_for
from edgefleet.agent.runtime.base import TLS_CERT_FILE, TLS_DIR, TLS_KEY_FILE
from edgefleet.protocol.models import ModuleTls

log = logging.getLogger(__name__)

S = TypeVar("S")
Executor: TypeAlias = Callable[[S, AgentContext], None]


@dataclass(frozen=True)
class Executors:
    fetch_artifact: Executor[FetchArtifact]
    create_module: Executor[CreateModule]
    start_module: Executor[StartModule]
    stop_module: Executor[StopModule]
    remove_module: Executor[RemoveModule]
    probe_health: Executor[ProbeHealth]

    def run(self, step: Step, ctx: AgentContext) -> None:
        match step:
            case FetchArtifact():
                self.fetch_artifact(step, ctx)
            case CreateModule():
                self.create_module(step, ctx)
            case StartModule():
                self.start_module(step, ctx)
            case StopModule():
                self.stop_module(step, ctx)
            case RemoveModule():
                self.remove_module(step, ctx)
            case ProbeHealth():
                self.probe_health(step, ctx)
            case _:
                _no_executor(step)


def _no_executor(step: NoReturn) -> NoReturn:
    """``assert_never`` with the old runtime message (a step that is not in the ``Step`` union)."""
    raise TypeError(f"no executor for step type {type(step).__name__}")


def fetch_artifact(step: FetchArtifact, ctx: AgentContext) -> None:
    ctx.fetcher.submit(step.digest, step.url, step.size)  # returns at once; wakes the loop when done


def create_module(step: CreateModule, ctx: AgentContext) -> None:
    state = ctx.saved.current
    port = step.port or step.spec.port or choose_port(step.module, state.ports, ctx.settings.port_range, ctx.device_id)
    # anything already there was left by a crash between materializing and recording: start clean
    workdir = fresh_directory(ctx.modules_dir, step.module, step.spec_hash)
    try:
        ctx.cache.materialize(step.spec.artifacts, workdir)  # copies: the module's own files
        for sub in ("model", "src"):  # the module is always given both, even when one is empty
            (workdir / sub).mkdir(exist_ok=True)
        if step.spec.tls is not None:
            copy_tls_files(step.spec.tls, ctx.tls_dir, workdir / TLS_DIR)
        ctx.runtime.create(step.spec, step.spec_hash, port, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)  # a half-made directory only takes disk space
        raise
    restarts = {k: v for k, v in ctx.saved.current.restarts.items() if k != step.module}  # new spec, fresh count
    ctx.saved.update(ports={**ctx.saved.current.ports, step.module: port}, restarts=restarts)


def start_module(step: StartModule, ctx: AgentContext) -> None:
    iid = instance_id_for(step.module, step.spec_hash)
    if step.restart:
        # the files are the module's own copies: it may have changed them, and a power loss may
        # have cut a copy short; what runs again is what the manifest signed
        target = ctx.target()
        spec = target.module(step.module) if target else None
        if spec is not None and spec.spec_hash() == step.spec_hash:
            ctx.cache.restore(spec.artifacts, ctx.modules_dir / step.module / step.spec_hash)
    ctx.runtime.start(iid)
    now = time.time()
    ctx.health[iid] = Health(started_at=now)
    if step.restart:
        record = restarted(ctx.saved.current.restarts.get(step.module), now)
        log.warning("restarting module %s (restart %d): %s", step.module, record.count, step.reason)
        ctx.saved.update(restarts={**ctx.saved.current.restarts, step.module: record})


def stop_module(step: StopModule, ctx: AgentContext) -> None:
    log.info("stopping module %s: %s", step.module, step.reason)
    target = ctx.target()
    spec = target.module(step.module) if target else None
    if step.replaced:
        ctx.gaps.overlapped(step.module)  # start-beside: the new one has been serving beside it
    elif spec is not None and step.instance_id != instance_id_for(step.module, spec.spec_hash()):
        ctx.gaps.stopped(step.module, time.time())  # an update: the old one stops serving now
    ctx.runtime.stop(step.instance_id, ctx.settings.stop_grace_s)
    ctx.health.pop(step.instance_id, None)


def remove_module(step: RemoveModule, ctx: AgentContext) -> None:
    ctx.runtime.remove(step.instance_id)
    target = ctx.target()
    if target is None or target.module(step.module) is None:
        ctx.saved.update(ports={k: v for k, v in ctx.saved.current.ports.items() if k != step.module})


def probe_health(step: ProbeHealth, ctx: AgentContext) -> None:
    ok, error = probe_http(step.port, step.path, step.timeout_s, host=step.host, tls=step.tls)
    now = time.time()
    old = ctx.health.get(step.instance_id)
    new = after_probe(old, ok, error, now)
    if new.ready and not (old and old.ready):
        log.info("module %s is ready (%.2fs after start)", step.module, now - new.started_at)
        ctx.gaps.ready(step.module, now)
    ctx.health[step.instance_id] = new


EXECUTORS = Executors(
    fetch_artifact=fetch_artifact,
    create_module=create_module,
    start_module=start_module,
    stop_module=stop_module,
    remove_module=remove_module,
    probe_health=probe_health,
)


def copy_tls_files(tls: ModuleTls, source_dir: Path, dest: Path) -> None:
    """Copy the certificate and key the deployment names from the agent's TLS directory (kept by
    the device's owner; a symlink there is the owner's choice) into ``dest``, readable by the
    agent's user only. ``TlsFilesMissing`` names the directory and the file when one is absent."""
    dest.mkdir(mode=0o700, exist_ok=True)
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for what, name, target in (("certificate", tls.certificate, TLS_CERT_FILE), ("key", tls.key, TLS_KEY_FILE)):
            source = source_dir / name
            try:
                src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise TlsFilesMissing(
                    f"TLS {what} {name!r} cannot be read from the agent's TLS directory {source_dir}: "
                    f"{exc.strerror or exc}; put the PEM file there (deploymentconfig.json tls.{what})"
                ) from None
            try:
                dst = open_inside(root, target, f"TLS {what} in {dest}", mode=0o400)
                try:
                    copy_fd(src, dst, os.fstat(src).st_size)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
    finally:
        os.close(root)


def choose_port(module: str, ports: dict[str, int], port_range: tuple[int, int], device_id: str) -> int:
    """The module's previous port when still free, else a free one from ``port_range`` (random start)."""
    taken = {p for name, p in ports.items() if name != module}
    previous = ports.get(module)
    if previous and previous not in taken and _port_free(previous):
        return previous
    low, high = port_range
    candidates = list(range(low, high + 1))
    start = random.randrange(len(candidates))  # spread devices sharing a host over the range
    for port in candidates[start:] + candidates[:start]:
        if port not in taken and _port_free(port):
            return port
    raise RuntimeFailure(f"no free port for module {module} in port_range {port_range} on device {device_id}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
