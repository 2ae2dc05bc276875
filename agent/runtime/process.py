"""Process runtime: each module instance is an OS process in its own session.

``start_new_session=True`` makes the module survive an agent crash; the agent finds it again by
the marks on its command line (``--edgefleet-device/-module/-spec``), scanning /proc once at start.
The command line follows the module contract (``edgefleet.protocol.module``). An instance is a
directory ``<modules>/<module>/<spec hash>/`` holding the materialized artifacts (model/, src/),
``instance.json`` (spec, port, pid, applied limits), the module's status file and its log.
``spec.resources`` become limits through ``edgefleet.agent.runtime.limits`` (cgroup v2/v1, else affinity + rlimit).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from edgefleet.agent.errors import ResourceLimitError, RuntimeFailure, UnknownModule
from edgefleet.agent.observed import Instance
from edgefleet.agent.runtime.base import (
    TLS_CERT_FILE,
    TLS_DIR,
    TLS_KEY_FILE,
    Runtime,
    instance_id_for,
    module_environment_secrets,
    tail_lines,
)
from edgefleet.agent.runtime.limits import ProcessLimits
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import ModuleSpec
from edgefleet.protocol.module import (
    AZUREML_MODEL_DIR,
    LOG_FILE_NAME,
    MARK_DEVICE,
    MARK_MODULE,
    MARK_SPEC,
    STATUS_FILE_NAME,
    ModuleOption,
    max_request_bytes_for,
    read_status_file,
)

log = logging.getLogger(__name__)

RECORD_FILE = "instance.json"
TRASH_DIR = ".removing"  # instance directories being deleted


@dataclass(frozen=True)
class _Record:
    module: str
    spec_hash: str
    port: int
    workdir: Path
    spec: ModuleSpec
    pid: int | None = None
    limits: str | None = None  # what ProcessLimits applied to the running process (reported)

    @property
    def instance_id(self) -> str:
        return instance_id_for(self.module, self.spec_hash)


def module_command(
    base: list[str], spec: ModuleSpec, *, device_id: str, spec_hash: str, port: int, workdir: Path
) -> list[str]:
    """The module's command line: ``base`` plus the contract's flags and identification marks.

    Never a secret: the command line is readable by every user (``ps``); keys go by environment.
    """
    opt = ModuleOption
    name = spec.models[0].name if spec.models else spec.name
    cmd = [
        *base,
        opt.MODEL_DIR.flag, str(workdir / "model"),
        opt.SOURCE_DIR.flag, str(workdir / "src"),
    ]  # fmt: skip
    if spec.entry_script:
        cmd += [opt.ENTRY_SCRIPT.flag, spec.entry_script]
    cmd += [
        opt.MODEL_NAME.flag, name,
        opt.PORT.flag, str(port),
        opt.HOST.flag, spec.listen_address,
        opt.ACCELERATOR.flag, ",".join(spec.accelerator.prefer),
        opt.MAX_REQUEST_BYTES.flag, str(max_request_bytes_for(spec.resources.memory_gb)),
    ]  # fmt: skip
    if spec.accelerator.required:
        cmd.append(opt.ACCELERATOR_REQUIRED.flag)
    if spec.resources.cpu is not None:
        cmd += [opt.CPU.flag, f"{spec.resources.cpu:g}"]
    if spec.tls is not None:
        tls = workdir / TLS_DIR
        cmd += [opt.TLS_CERT.flag, str(tls / TLS_CERT_FILE), opt.TLS_KEY.flag, str(tls / TLS_KEY_FILE)]
    cmd += [
        opt.STATUS_FILE.flag, str(workdir / STATUS_FILE_NAME),
        MARK_DEVICE, device_id,
        MARK_MODULE, spec.name,
        MARK_SPEC, spec_hash,
    ]  # fmt: skip
    return cmd


def _mark(cmdline: list[str], flag: str) -> str | None:
    try:
        return cmdline[cmdline.index(flag) + 1]
    except (ValueError, IndexError):
        return None


class ProcessRuntime(Runtime):
    kind = "process"

    def __init__(
        self, root: Path, device_id: str, base_command: list[str], limits: ProcessLimits | None = None
    ) -> None:
        self.root = root.resolve()
        self.device_id = device_id
        self.base_command = base_command
        self.limits = limits or ProcessLimits(device_id)
        self._lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[str, int] = {}  # instance id -> code seen by this agent run
        self._listener: Callable[[str], None] = lambda _id: None
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / TRASH_DIR, ignore_errors=True)  # what a killed agent was deleting
        self._load_records()
        self._adopt()

    def set_exit_listener(self, listener: Callable[[str], None]) -> None:
        self._listener = listener

    # --- discovery and adoption ------------------------------------------------------------------

    def _load_records(self) -> None:
        for path in sorted(self.root.glob(f"*/*/{RECORD_FILE}")):
            if path.parts[len(self.root.parts)].startswith("."):
                continue  # trash and other agent-internal directories
            try:
                raw = json.loads(path.read_text())
                rec = _Record(
                    module=raw["module"],
                    spec_hash=raw["specHash"],
                    port=int(raw["port"]),
                    workdir=path.parent,
                    spec=ModuleSpec.model_validate(raw["spec"]),
                    pid=raw.get("pid"),
                    limits=raw.get("limits"),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable instance record %s: %s", path, exc)
                continue
            self._records[rec.instance_id] = rec

    def _scan(self) -> dict[tuple[str, str], list[psutil.Process]]:
        """Processes carrying this device's marks, by (module, spec hash)."""
        found: dict[tuple[str, str], list[psutil.Process]] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if not self._ours(cmdline):
                continue
            module, spec_hash = _mark(cmdline, MARK_MODULE), _mark(cmdline, MARK_SPEC)
            if module and spec_hash and proc.pid != os.getpid():
                found.setdefault((module, spec_hash), []).append(proc)
        return found

    def _adopt(self) -> None:
        """Match running module processes to records; stop processes nobody can account for twice."""
        for (module, spec_hash), procs in self._scan().items():
            iid = instance_id_for(module, spec_hash)
            rec = self._records.get(iid)
            procs.sort(key=lambda p: (rec is None or p.pid != rec.pid, p.pid))
            keep, extra = procs[0], procs[1:]
            if rec is None:
                # started by an agent that died before its record was written; without a record
                # there is no spec to run it by, so it is stopped rather than guessed at
                extra = procs
            elif rec.pid != keep.pid:
                self._records[iid] = replace(rec, pid=keep.pid)
                self._persist(self._records[iid])
            for proc in extra:
                log.warning("stopping stray module process pid %d (%s, spec %s)", proc.pid, module, spec_hash)
                self._terminate(proc.pid, grace_s=2.0)
            if rec is not None:
                log.info("adopted running module %s (pid %d, spec %s)", module, keep.pid, spec_hash)

    def _alive(self, rec: _Record) -> bool:
        if rec.pid is None:
            return False
        child = self._children.get(rec.pid)
        if child is not None:
            return child.poll() is None
        try:
            proc = psutil.Process(rec.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        # guard against pid reuse: it must still carry our marks
        return self._ours(cmdline) and _mark(cmdline, MARK_SPEC) == rec.spec_hash

    def _ours(self, cmdline: list[str]) -> bool:
        """This device's mark *and* a status file under this agent's directory: simulated fleets and
        test runs on one host reuse device ids, and one agent must never adopt another's modules."""
        status_file = _mark(cmdline, ModuleOption.STATUS_FILE.flag) or ""
        return _mark(cmdline, MARK_DEVICE) == self.device_id and status_file.startswith(f"{self.root}/")

    # --- Runtime interface -----------------------------------------------------------------------

    def list_instances(self) -> list[Instance]:
        with self._lock:
            result = []
            for rec in self._records.values():
                running = self._alive(rec)
                result.append(
                    Instance(
                        instance_id=rec.instance_id,
                        module=rec.module,
                        spec_hash=rec.spec_hash,
                        running=running,
                        pid=rec.pid,
                        exit_code=None if running else self._exit_codes.get(rec.instance_id),
                        port=rec.port,
                        status=read_status_file(rec.workdir / STATUS_FILE_NAME),
                        limits=rec.limits,
                    )
                )
            return result

    def create(self, spec: ModuleSpec, spec_hash: str, port: int, workdir: Path) -> str:
        rec = _Record(module=spec.name, spec_hash=spec_hash, port=port, workdir=workdir, spec=spec)
        with self._lock:
            self._persist(rec)
            self._records[rec.instance_id] = rec
        return rec.instance_id

    def start(self, instance_id: str) -> None:
        with self._lock:
            rec = self._get(instance_id)
            if self._alive(rec):
                return
            (rec.workdir / STATUS_FILE_NAME).unlink(missing_ok=True)  # a stale status must not speak for the new run
            self._exit_codes.pop(instance_id, None)
            cmd = module_command(
                self.base_command,
                rec.spec,
                device_id=self.device_id,
                spec_hash=rec.spec_hash,
                port=rec.port,
                workdir=rec.workdir,
            )
            env = module_environment_secrets(
                {**os.environ, **rec.spec.env, AZUREML_MODEL_DIR: str(rec.workdir / "model"), "PYTHONUNBUFFERED": "1"},
                rec.spec,
            )
            limits = self.limits.prepare(instance_id, rec.module, rec.spec.resources)
            try:
                with open(rec.workdir / LOG_FILE_NAME, "ab") as out:
                    child = subprocess.Popen(
                        cmd,
                        cwd=rec.workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # survives the agent; its own process group for stop()
                        preexec_fn=limits.preexec,  # joins its cgroup / sets affinity and rlimits before exec
                    )
            except OSError as exc:
                raise RuntimeFailure(
                    f"module {rec.module}: cannot start {cmd[0]!r}: {exc}; check the agent's module_command setting"
                ) from exc
            except subprocess.SubprocessError as exc:  # raised by the preexec hook in the child
                raise ResourceLimitError(
                    f"module {rec.module}: applying limits ({limits.summary}) in the new process failed: {exc}; "
                    "set resource_limits to 'no-cgroups' or 'off' if this host does not allow them"
                ) from exc
            self._children[child.pid] = child
            rec = replace(rec, pid=child.pid, limits=limits.summary)
            self._records[instance_id] = rec
            self._persist(rec)
        log.info("started module %s (pid %d, port %d, spec %s)", rec.module, child.pid, rec.port, rec.spec_hash)
        threading.Thread(
            target=self._wait_child, args=(instance_id, child), daemon=True, name=f"wait-{rec.module}"
        ).start()

    def _wait_child(self, instance_id: str, child: subprocess.Popen[bytes]) -> None:
        code = child.wait()
        with self._lock:
            self._exit_codes[instance_id] = code
            self._children.pop(child.pid, None)
        log.info("module instance %s (pid %d) exited with code %d", instance_id, child.pid, code)
        self._listener(instance_id)

    def stop(self, instance_id: str, grace_s: float) -> None:
        with self._lock:
            rec = self._get(instance_id)
            alive = self._alive(rec)
        if alive and rec.pid is not None:
            log.info("stopping module %s (pid %d)", rec.module, rec.pid)
            self._terminate(rec.pid, grace_s)

    def _terminate(self, pid: int, grace_s: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        child = self._children.get(pid)
        try:
            group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        send = (lambda sig: os.killpg(pid, sig)) if group else (lambda sig: os.kill(pid, sig))
        try:
            send(signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._wait_gone(pid, child, grace_s):
            return
        log.warning("module pid %d ignored SIGTERM for %.1fs; killing it", pid, grace_s)
        try:
            send(signal.SIGKILL)
        except ProcessLookupError:
            return
        self._wait_gone(pid, child, 5.0)

    @staticmethod
    def _wait_gone(pid: int, child: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        """Wait until the process has exited. An adopted (non-child) process counts as exited once it
        is a zombie: reaping it is init's job, and init may be slow or, in some containers, absent."""
        if child is not None:
            try:
                child.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def remove(self, instance_id: str) -> None:
        with self._lock:
            rec = self._records.get(instance_id)
            if rec is None:
                return
            if self._alive(rec):
                raise RuntimeFailure(f"module instance {instance_id} is still running; stop it before removing it")
            del self._records[instance_id]
            self._exit_codes.pop(instance_id, None)
        if rec.limits and rec.limits.startswith("cgroup"):
            self.limits.release(instance_id)
        # rename first: the record vanishes with its directory in one atomic step, so an agent
        # killed mid-delete leaves only trash (swept at start), never a directory without a record
        trash = self.root / TRASH_DIR / f"{rec.module}-{rec.spec_hash}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(exist_ok=True)
        try:
            os.rename(rec.workdir, trash)
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)
        try:
            trash.parent.rmdir()  # only when empty: nothing agent-internal lingers among module directories
        except OSError:
            pass
        try:
            rec.workdir.parent.rmdir()  # the module's directory, once its last instance is gone
        except OSError:
            pass

    def logs(self, module: str, tail: int) -> list[str]:
        with self._lock:
            recs = [r for r in self._records.values() if r.module == module]
            if not recs:
                raise UnknownModule(f"no instance of module {module!r} on device {self.device_id}")
            recs.sort(key=lambda r: (not self._alive(r), r.instance_id))
        return tail_lines(recs[0].workdir / LOG_FILE_NAME, tail)

    # --- helpers ---------------------------------------------------------------------------------

    def _get(self, instance_id: str) -> _Record:
        rec = self._records.get(instance_id)
        if rec is None:
            raise UnknownModule(f"no module instance {instance_id} on device {self.device_id}")
        return rec

    def _persist(self, rec: _Record) -> None:
        body = {
            "module": rec.module,
            "specHash": rec.spec_hash,
            "port": rec.port,
            "pid": rec.pid,
            "limits": rec.limits,
            "spec": rec.spec.to_wire(),
        }
        # the spec holds the scoring keys: readable by the agent's user only
        write_atomic(rec.workdir / RECORD_FILE, json.dumps(body, indent=1).encode(), mode=0o600)
