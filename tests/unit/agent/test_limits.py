"""Resource limits, the pure part: reading the host's cgroup layout, choosing a mechanism, and what
each mechanism writes or sets. The I/O path on this host is in tests/integration/test_agent_limits.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.agent.runtime.limits import (
    CgroupDirs,
    LimitPlan,
    Mechanism,
    cgroup_dirs,
    choose_mechanism,
    limit_plan,
    parse_mountinfo,
    parse_proc_cgroup,
    pick_cores,
)
from edgefleet.protocol.models import Resources

# /proc/self/mountinfo and /proc/self/cgroup of three kinds of hosts
SYSTEMD_V2 = (
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    "24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
    "0::/system.slice/edgefleet-agent.service\n",
)
HYBRID_V1 = (  # this sandbox: v1 controllers, an empty cgroup2 "unified" mount, a container's memory path
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
    "4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n",
)
CONTAINER_V1 = (  # a container without a cgroup namespace: its mounts show their own group as root
    "500 499 0:40 /docker/c1 /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
    "501 499 0:41 /docker/c1 /sys/fs/cgroup/my\\040memory ro,nosuid - cgroup cgroup rw,memory\n",
    "5:cpu,cpuacct:/docker/c1\n4:memory:/docker/c1\n",
)


@pytest.mark.parametrize(
    ("host", "parent", "expected"),
    [
        (SYSTEMD_V2, None, CgroupDirs(v2=Path("/sys/fs/cgroup/system.slice/edgefleet-agent.service"))),
        (SYSTEMD_V2, "/edgefleet.slice", CgroupDirs(v2=Path("/sys/fs/cgroup/edgefleet.slice"))),
        (
            HYBRID_V1,
            None,
            CgroupDirs(
                v2=Path("/sys/fs/cgroup/unified"),
                v1_cpu=Path("/sys/fs/cgroup/cpu"),
                v1_memory=Path("/sys/fs/cgroup/memory/process_api/abc"),
            ),
        ),
        (
            CONTAINER_V1,
            None,
            CgroupDirs(v1_cpu=Path("/sys/fs/cgroup/cpu,cpuacct"), v1_memory=Path("/sys/fs/cgroup/my memory")),
        ),
        (
            CONTAINER_V1,
            "/docker/c1/mods",
            CgroupDirs(v1_cpu=Path("/sys/fs/cgroup/cpu,cpuacct/mods"), v1_memory=Path("/sys/fs/cgroup/my memory/mods")),
        ),
        (("", ""), None, CgroupDirs()),
    ],
    ids=[
        "systemd-v2-own",
        "systemd-v2-configured",
        "hybrid-v1",
        "container-v1-root",
        "container-v1-configured",
        "none",
    ],
)
def test_cgroup_dirs_per_host(host: tuple[str, str], parent: str | None, expected: CgroupDirs) -> None:
    mountinfo, proc_cgroup = host
    assert cgroup_dirs(parse_mountinfo(mountinfo), parse_proc_cgroup(proc_cgroup), parent) == expected


def test_parse_proc_cgroup_splits_comounted_controllers() -> None:
    assert parse_proc_cgroup(CONTAINER_V1[1]) == {"cpu": "/docker/c1", "cpuacct": "/docker/c1", "memory": "/docker/c1"}
    assert parse_proc_cgroup(SYSTEMD_V2[1]) == {"": "/system.slice/edgefleet-agent.service"}


@pytest.mark.parametrize(
    ("mode", "v2", "v1", "affinity", "expected"),
    [
        ("auto", True, True, True, Mechanism.CGROUP_V2),
        ("auto", False, True, True, Mechanism.CGROUP_V1),
        ("auto", False, False, True, Mechanism.AFFINITY_RLIMIT),
        ("auto", False, False, False, Mechanism.NONE),
        ("no-cgroups", True, True, True, Mechanism.AFFINITY_RLIMIT),
        ("off", True, True, True, Mechanism.NONE),
    ],
)
def test_choose_mechanism(mode: str, v2: bool, v1: bool, affinity: bool, expected: Mechanism) -> None:
    got = choose_mechanism(mode, v2_usable=v2, v1_usable=v1, affinity_supported=affinity)  # type: ignore[arg-type]
    assert got == expected


HALF_CORE_QUARTER_GB = Resources(cpu=0.5, memoryInGB=0.25)
QUARTER_GB = 256 * 1024**2


@pytest.mark.parametrize(
    ("mechanism", "resources", "expected"),
    [
        (
            Mechanism.CGROUP_V2,
            HALF_CORE_QUARTER_GB,
            LimitPlan(
                Mechanism.CGROUP_V2,
                {"v2": {"cpu.max": "50000 100000", "memory.max": str(QUARTER_GB)}},
                summary="cgroup-v2: cpu 0.5 cores, memory 0.25 GB",
            ),
        ),
        (
            Mechanism.CGROUP_V1,
            HALF_CORE_QUARTER_GB,
            LimitPlan(
                Mechanism.CGROUP_V1,
                {
                    "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"},
                    "memory": {"memory.limit_in_bytes": str(QUARTER_GB)},
                },
                summary="cgroup-v1: cpu 0.5 cores, memory 0.25 GB",
            ),
        ),
        (
            Mechanism.CGROUP_V1,
            Resources(cpu=0.001),  # below the kernel's minimum quota: the minimum, not an error
            LimitPlan(
                Mechanism.CGROUP_V1,
                {"cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "1000"}},
                summary="cgroup-v1: cpu 0.001 cores",
            ),
        ),
        (
            Mechanism.AFFINITY_RLIMIT,
            Resources(cpu=1.5, memoryInGB=0.25),
            LimitPlan(
                Mechanism.AFFINITY_RLIMIT,
                cores=pick_cores(1.5, range(4), "m"),
                rlimit_data=QUARTER_GB,
                summary=f"affinity+rlimit: cpu 1.5 cores as affinity to cpus "
                f"{','.join(map(str, sorted(pick_cores(1.5, range(4), 'm'))))}, memory 0.25 GB as RLIMIT_DATA",
            ),
        ),
        (
            Mechanism.AFFINITY_RLIMIT,
            Resources(memoryInGB=0.25),
            LimitPlan(
                Mechanism.AFFINITY_RLIMIT,
                rlimit_data=QUARTER_GB,
                summary="affinity+rlimit: memory 0.25 GB as RLIMIT_DATA",
            ),
        ),
        (Mechanism.CGROUP_V2, Resources(), LimitPlan(Mechanism.NONE)),
        (
            Mechanism.NONE,
            Resources(cpu=1),
            LimitPlan(Mechanism.NONE, summary="none: cpu 1 cores asked, but resource limits are off on this agent"),
        ),
    ],
    ids=["v2", "v1", "v1-min-quota", "affinity-rlimit", "rlimit-only", "nothing-asked", "off"],
)
def test_limit_plan(mechanism: Mechanism, resources: Resources, expected: LimitPlan) -> None:
    assert limit_plan(mechanism, resources, allowed_cores=range(4), module="m") == expected


def test_pick_cores_takes_ceil_of_cpu_and_spreads_modules() -> None:
    assert len(pick_cores(0.5, {0, 1, 2, 3}, "a")) == 1
    assert len(pick_cores(2.01, {0, 1, 2, 3}, "a")) == 3
    assert pick_cores(8, {2, 5}, "a") == {2, 5}  # never more than the agent itself may use
    assert pick_cores(1.5, {4, 5, 6}, "a") <= {4, 5, 6}
    assert len({min(pick_cores(1, range(8), f"module-{i}")) for i in range(16)}) > 1
