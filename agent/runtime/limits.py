"""Resource limits for module processes, from ``spec.resources`` (``cpu`` cores, ``memoryInGB``).

Mechanisms, best first (``choose_mechanism``):

- cgroup v2: a child group per instance under ``<parent>/edgefleet-<device>/``, with ``cpu.max``
  and ``memory.max``. Needs a writable cgroup2 hierarchy whose parent offers the cpu and memory
  controllers (a delegated subtree, e.g. systemd ``Delegate=yes``).
- cgroup v1: the same layout in the ``cpu`` and ``memory`` hierarchies (``cpu.cfs_quota_us``,
  ``memory.limit_in_bytes``), when that is what is mounted and writable.
- affinity+rlimit: the module is pinned to ceil(cpu) cores and gets ``RLIMIT_DATA``. RLIMIT_DATA,
  not RLIMIT_AS: AS counts every mapping (shared libraries, thread-stack and allocator
  reservations), so a Python + onnxruntime module hits it long before it uses that much memory;
  DATA counts private writable memory (heap, anonymous mmap) since Linux 4.7.

The parent is the agent's own cgroup unless ``limits_cgroup_parent`` names one (a path as in
/proc/self/cgroup, relative to the hierarchy's root).

Race-free: everything that can fail is done by the agent before the fork (make the group, write
its limits, compute cores and rlimits); the child then joins the group / sets affinity and rlimits
in ``preexec_fn``, between fork and exec, so not one instruction of the module runs unlimited and
nothing it forks escapes. (Moving the pid after spawn would leave that window open.) The hook
only makes system calls on values prepared beforehand: it takes no lock another agent thread
could hold at fork time, which is what makes ``preexec_fn`` unsafe in threaded programs.

Pure decisions (parsing, which mechanism, what to write) are separate from the I/O
(``CgroupProbe``, ``ProcessLimits``), so each environment's path is unit-tested without it.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from edgefleet.agent.admission import BYTES_PER_GB, memory_bytes
from edgefleet.agent.errors import ResourceLimitError
from edgefleet.protocol.models import Resources

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses smaller quotas
LimitsMode = Literal["auto", "no-cgroups", "off"]


class Mechanism(str, Enum):
    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    AFFINITY_RLIMIT = "affinity+rlimit"
    NONE = "none"


# --- parsing /proc (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMount:
    mountpoint: str
    root: str  # the cgroup path the mount shows at its mountpoint (not "/" inside some containers)
    version: int  # 1 or 2
    controllers: frozenset[str] = frozenset()  # v1: from the super options; v2: empty here


def parse_mountinfo(text: str) -> list[CgroupMount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, superopts = tail[0], tail[2]
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            mounts.append(CgroupMount(mountpoint, root, 2))
        elif fstype == "cgroup":
            mounts.append(CgroupMount(mountpoint, root, 1, frozenset(superopts.split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as controller -> path; the cgroup2 (unified) path under the key ""."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    return own


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


@dataclass(frozen=True)
class CgroupDirs:
    """Where this agent's module groups would go in each hierarchy (None: not mounted)."""

    v2: Path | None = None
    v1_cpu: Path | None = None
    v1_memory: Path | None = None


def cgroup_dirs(mounts: Iterable[CgroupMount], own: Mapping[str, str], parent: str | None) -> CgroupDirs:
    """The parent directory in each hierarchy: ``parent`` if configured, else the agent's own group."""

    def place(mount: CgroupMount, key: str) -> Path | None:
        path = parent if parent is not None else own.get(key)
        if path is None:
            return None
        root = mount.root.rstrip("/")
        rel = path[len(root) :] if root and (path == root or path.startswith(root + "/")) else path
        return Path(mount.mountpoint) / rel.lstrip("/")

    v2 = v1_cpu = v1_memory = None
    for m in mounts:
        if m.version == 2 and v2 is None:
            v2 = place(m, "")
        elif m.version == 1 and "cpu" in m.controllers and v1_cpu is None:
            v1_cpu = place(m, "cpu")
        elif m.version == 1 and "memory" in m.controllers and v1_memory is None:
            v1_memory = place(m, "memory")
    return CgroupDirs(v2, v1_cpu, v1_memory)


# --- the decision (pure) ---------------------------------------------------------------------------


def choose_mechanism(mode: LimitsMode, *, v2_usable: bool, v1_usable: bool, affinity_supported: bool) -> Mechanism:
    if mode == "off":
        return Mechanism.NONE
    if mode == "auto" and v2_usable:
        return Mechanism.CGROUP_V2
    if mode == "auto" and v1_usable:
        return Mechanism.CGROUP_V1
    return Mechanism.AFFINITY_RLIMIT if affinity_supported else Mechanism.NONE


def cpu_quota_us(cpu: float) -> int:
    return max(MIN_CPU_QUOTA_US, round(cpu * CPU_PERIOD_US))


def pick_cores(cpu: float, allowed: Iterable[int], module: str) -> frozenset[int]:
    """ceil(cpu) of the agent's cores; the start is spread by module name so modules do not all share core 0."""
    cores = sorted(allowed)
    n = min(max(math.ceil(cpu), 1), len(cores))
    start = zlib.crc32(module.encode()) % len(cores)
    return frozenset((cores * 2)[start : start + n])


@dataclass(frozen=True)
class LimitPlan:
    """What to do for one instance: files to write before the fork (path relative to the group ->
    value, per hierarchy), groups the child joins, affinity and rlimit it sets, and the summary."""

    mechanism: Mechanism
    writes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # hierarchy -> file -> value
    cores: frozenset[int] | None = None
    rlimit_data: int | None = None
    summary: str | None = None  # reported to the hub; None when nothing was asked


def limit_plan(mechanism: Mechanism, resources: Resources, *, allowed_cores: Iterable[int], module: str) -> LimitPlan:
    cpu, memory = resources.cpu, memory_bytes(resources)
    if cpu is None and memory is None:
        return LimitPlan(Mechanism.NONE)
    asked = ", ".join(
        ([f"cpu {cpu:g} cores"] if cpu is not None else [])
        + ([f"memory {memory / BYTES_PER_GB:.3g} GB"] if memory is not None else [])
    )
    if mechanism == Mechanism.CGROUP_V2:
        files = {}
        if cpu is not None:
            files["cpu.max"] = f"{cpu_quota_us(cpu)} {CPU_PERIOD_US}"
        if memory is not None:
            files["memory.max"] = str(memory)
        return LimitPlan(mechanism, {"v2": files}, summary=f"cgroup-v2: {asked}")
    if mechanism == Mechanism.CGROUP_V1:
        writes: dict[str, dict[str, str]] = {}
        if cpu is not None:
            writes["cpu"] = {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(cpu_quota_us(cpu))}
        if memory is not None:
            writes["memory"] = {"memory.limit_in_bytes": str(memory)}
        return LimitPlan(mechanism, writes, summary=f"cgroup-v1: {asked}")
    if mechanism == Mechanism.AFFINITY_RLIMIT:
        cores = pick_cores(cpu, allowed_cores, module) if cpu is not None else None
        parts = []
        if cores is not None:
            parts.append(f"cpu {cpu:g} cores as affinity to cpus {','.join(map(str, sorted(cores)))}")
        if memory is not None:
            parts.append(f"memory {memory / BYTES_PER_GB:.3g} GB as RLIMIT_DATA")
        return LimitPlan(mechanism, cores=cores, rlimit_data=memory, summary="affinity+rlimit: " + ", ".join(parts))
    return LimitPlan(Mechanism.NONE, summary=f"none: {asked} asked, but resource limits are off on this agent")


# --- I/O -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """Limits made ready for one start: ``preexec`` runs in the child between fork and exec."""

    summary: str | None
    preexec: Callable[[], None] | None


class ProcessLimits:
    """Probes this host once (on first need), then prepares and releases per-instance limits.

    Layout: ``<parent>/edgefleet-<device>/<module>.<spec hash>/`` in each hierarchy used. The
    device's group is made when an instance needs it and removed with its last instance, so a
    device that stops using limits leaves nothing behind.
    """

    def __init__(self, device_id: str, mode: LimitsMode = "auto", cgroup_parent: str | None = None) -> None:
        self.group = f"edgefleet-{device_id}"
        self.mode = mode
        self.cgroup_parent = cgroup_parent
        self._lock = threading.RLock()
        self._mechanism: Mechanism | None = None
        self._parents: dict[str, Path] = {}  # hierarchy ("v2", "cpu", "memory") -> parent directory

    @property
    def mechanism(self) -> Mechanism:
        with self._lock:
            if self._mechanism is None:
                self._mechanism = self._probe()
                log.info("resource limits for module processes: %s", self._mechanism.value)
            return self._mechanism

    def prepare(self, instance: str, module: str, resources: Resources) -> Prepared:
        """Make the instance's groups and write its limits (idempotent: a restart reuses them)."""
        if resources.cpu is None and resources.memory_gb is None:
            return Prepared(None, None)
        with self._lock:
            mechanism = self.mechanism
            allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
            plan = limit_plan(mechanism, resources, allowed_cores=allowed, module=module)
            procs: list[str] = []
            for hierarchy, files in plan.writes.items():
                group = self._parents[hierarchy] / self.group / _group_name(instance)
                try:
                    self._make_device_group(hierarchy)
                    group.mkdir(exist_ok=True)
                    for name, value in files.items():
                        (group / name).write_text(value)
                except OSError as exc:
                    raise ResourceLimitError(
                        f"module {module}: cannot set {mechanism.value} limits in {group} ({exc}); give the agent a "
                        "writable cgroup (limits_cgroup_parent) or set resource_limits to 'no-cgroups'"
                    ) from exc
                procs.append(str(group / "cgroup.procs"))
        return Prepared(plan.summary, _child_hook(procs, plan.cores, plan.rlimit_data))

    def release(self, instance: str) -> None:
        """Remove the instance's groups (its processes are gone), and the device's group once empty."""
        with self._lock:
            if self.mechanism not in (Mechanism.CGROUP_V1, Mechanism.CGROUP_V2):  # probes after an agent restart
                return
            for parent in self._parents.values():
                group = parent / self.group / _group_name(instance)
                try:
                    group.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot remove cgroup %s of module instance %s: %s", group, instance, exc)
                try:
                    (parent / self.group).rmdir()
                except OSError:
                    pass  # other instances still have groups there

    def _make_device_group(self, hierarchy: str) -> None:
        base = self._parents[hierarchy] / self.group
        if base.is_dir():
            return
        base.mkdir()
        if hierarchy == "v2":
            # fails with EBUSY when the parent holds processes itself (the "no internal processes" rule)
            (self._parents["v2"] / "cgroup.subtree_control").write_text("+cpu +memory")
            (base / "cgroup.subtree_control").write_text("+cpu +memory")

    def _probe(self) -> Mechanism:
        affinity = hasattr(os, "sched_setaffinity")
        if self.mode != "auto":
            return choose_mechanism(self.mode, v2_usable=False, v1_usable=False, affinity_supported=affinity)
        try:
            mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
        except OSError:
            mounts, own = [], {}
        dirs = cgroup_dirs(mounts, own, self.cgroup_parent)
        v2 = dirs.v2 is not None and self._usable({"v2": dirs.v2})
        v1 = (
            not v2
            and dirs.v1_cpu is not None
            and dirs.v1_memory is not None
            and self._usable({"cpu": dirs.v1_cpu, "memory": dirs.v1_memory})
        )
        return choose_mechanism("auto", v2_usable=v2, v1_usable=v1, affinity_supported=affinity)

    def _usable(self, parents: dict[str, Path]) -> bool:
        """Try it: make the device's group in each hierarchy (cgroup v2: with cpu and memory enabled)."""
        if "v2" in parents:
            available = (_read(parents["v2"] / "cgroup.controllers") or "").split()
            if not {"cpu", "memory"} <= set(available):
                log.info("cgroup v2 at %s offers %s, not cpu and memory", parents["v2"], available)
                return False
        self._parents = parents
        try:
            for hierarchy in parents:
                self._make_device_group(hierarchy)
        except OSError as exc:
            log.info("cgroups at %s are not usable for module limits: %s", ", ".join(map(str, parents.values())), exc)
            for parent in parents.values():  # undo a half-made layout (one hierarchy writable, one not)
                try:
                    (parent / self.group).rmdir()
                except OSError:
                    pass
            self._parents = {}
            return False
        return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _group_name(instance: str) -> str:
    return instance.replace("@", ".")  # module@spec-hash: one group per instance


def _child_hook(procs: list[str], cores: frozenset[int] | None, rlimit_data: int | None) -> Callable[[], None] | None:
    if not procs and cores is None and rlimit_data is None:
        return None
    paths = [p.encode() for p in procs]  # encoded now: the child only makes system calls

    def hook() -> None:
        pid = str(os.getpid()).encode()
        for path in paths:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if cores is not None:
            os.sched_setaffinity(0, cores)
        if rlimit_data is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (rlimit_data, rlimit_data))

    return hook
