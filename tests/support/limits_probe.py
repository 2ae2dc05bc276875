"""Reads back what the kernel enforces on a process: its cgroups' cpu and memory limits, its CPU
affinity and RLIMIT_DATA. Independent of ``edgefleet.agent.runtime.limits`` on purpose: tests check the
agent's work against the kernel's view, not against the agent's own parsing."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KernelLimits:
    cgroup_cpu: float | None  # cores allowed by the cpu controller (None: unlimited / not in one)
    cgroup_memory: int | None  # bytes
    cgroup_dirs: tuple[Path, ...]  # the process's cpu/memory cgroup directories
    affinity: frozenset[int]
    rlimit_data: int | None  # None: unlimited


def _mounts() -> dict[str, tuple[str, str]]:
    """controller ("" for cgroup2) -> (mount root, mountpoint)."""
    found: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail[0] == "cgroup2":
            found.setdefault("", (fields[3], fields[4]))
        elif tail[0] == "cgroup":
            for opt in tail[2].split(","):
                found.setdefault(opt, (fields[3], fields[4]))
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def kernel_limits(pid: int) -> KernelLimits:
    mounts = _mounts()
    cpu: float | None = None
    memory: int | None = None
    dirs: list[Path] = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for ctl in controllers.split(",") if controllers else [""]:
            if ctl not in ("", "cpu", "memory") or ctl not in mounts:
                continue
            root, mountpoint = mounts[ctl]
            d = Path(mountpoint) / os.path.relpath(path, root) if path.startswith(root) else Path(mountpoint + path)
            if ctl == "cpu":
                quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                if quota and period and int(quota) > 0:
                    cpu = int(quota) / int(period)
                    dirs.append(d)
            elif ctl == "memory":
                limit = _read(d / "memory.limit_in_bytes")
                if limit and int(limit) < 2**62:  # v1 shows "unlimited" as a huge number
                    memory = int(limit)
                    dirs.append(d)
            else:
                cpu_max, mem_max = _read(d / "cpu.max"), _read(d / "memory.max")
                limited = False
                if cpu_max and not cpu_max.startswith("max"):
                    quota_s, period_s = cpu_max.split()
                    cpu, limited = int(quota_s) / int(period_s), True
                if mem_max and mem_max != "max":
                    memory, limited = int(mem_max), True
                if limited:
                    dirs.append(d)
    soft, _hard = resource.prlimit(pid, resource.RLIMIT_DATA)
    return KernelLimits(
        cgroup_cpu=cpu,
        cgroup_memory=memory,
        cgroup_dirs=tuple(dirs),
        affinity=frozenset(os.sched_getaffinity(pid)),
        rlimit_data=None if soft == resource.RLIM_INFINITY else soft,
    )


def remove_device_cgroups(device_id: str) -> None:
    """Test cleanup: the module groups an agent of ``device_id`` left (a test that failed midway)."""
    for _root, mountpoint in set(_mounts().values()):
        for depth in ("", "*/", "*/*/", "*/*/*/"):
            for base in Path(mountpoint).glob(f"{depth}edgefleet-{device_id}"):
                for group in base.iterdir():
                    if group.is_dir():
                        group.rmdir()
                base.rmdir()
