"""Back-pressure decisions (admission), worker counts and the cpu quota: pure, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.modules.scoring.admission import Admission, admission_for, share
from edgefleet.modules.scoring.http import retry_after_s
from edgefleet.modules.scoring.server import cpu_threads_per_worker
from edgefleet.modules.scoring.workers import CGROUP_ROOT, cpu_quota, workers_for


def test_the_count_limit_turns_away_the_next_request_until_one_is_released() -> None:
    gate = Admission(limit=2, byte_budget=10_000, max_wait_s=0.5)
    assert gate.admit(100) is None and gate.admit(100) is None
    why = gate.admit(100)
    assert why is not None and "2 scoring requests are in progress" in why
    gate.release(100)
    assert gate.admit(100) is None
    assert (gate.active, gate.active_bytes) == (2, 200)


def test_the_byte_budget_bounds_the_bodies_held_but_one_request_always_fits_alone() -> None:
    gate = Admission(limit=10, byte_budget=1000, max_wait_s=0.5)
    assert gate.admit(5000) is None  # larger than the budget, but nothing else is held
    why = gate.admit(1)
    assert why is not None and "hold 5000 bytes of 1000" in why
    gate.release(5000)
    assert gate.admit(600) is None and gate.admit(400) is None
    assert gate.admit(1) is not None


def test_queue_wait_past_the_limit_expires() -> None:
    gate = Admission(limit=1, byte_budget=1, max_wait_s=0.5)
    assert not gate.expired(queued_at=10.0, now=10.5)
    assert gate.expired(queued_at=10.0, now=10.501)


def test_the_container_limits_are_shared_between_workers() -> None:
    assert share(64, 1) == 64 and share(64, 3) == 22 and share(1, 4) == 1
    gate = admission_for(max_concurrent_requests=64, max_queue_wait_ms=250, max_request_bytes=1000, workers=2)
    assert (gate.limit, gate.byte_budget, gate.max_wait_s) == (32, 2000, 0.25)


@pytest.mark.parametrize(("wait_ms", "seconds"), [(1, 1), (500, 1), (1000, 1), (1001, 2), (60_000, 60)])
def test_retry_after_is_about_one_queue_wait(wait_ms: int, seconds: int) -> None:
    assert retry_after_s(wait_ms) == seconds


@pytest.mark.parametrize(("cpu", "workers"), [(0.25, 1), (1.0, 1), (1.9, 1), (2.0, 2), (3.5, 3), (16, 16)])
def test_one_worker_per_whole_core(cpu: float, workers: int) -> None:
    assert workers_for(cpu) == workers


@pytest.mark.parametrize(("cpu", "workers", "threads"), [(2, 2, 1), (2, 1, 2), (0.5, 1, 1), (8, 3, 2)])
def test_each_worker_gets_its_share_of_the_cores_for_onnxruntime(cpu: float, workers: int, threads: int) -> None:
    assert cpu_threads_per_worker(cpu, workers) == threads


def _reader(files: dict[str, str]):  # type: ignore[no-untyped-def]
    def read(path: Path) -> str:
        try:
            return files[str(path.relative_to(CGROUP_ROOT))]
        except KeyError:
            raise FileNotFoundError(path) from None

    return read


def test_the_cgroup_quota_is_the_lowest_on_the_way_to_the_root() -> None:
    files = {"a/cpu.max": "max 100000", "a/b/cpu.max": "150000 100000", "a/b/c/cpu.max": "300000 100000"}
    assert cpu_quota("0::/a/b/c\n", _reader(files)) == 1.5
    assert cpu_quota("0::/a\n", _reader(files)) is None  # "max": no quota
    assert cpu_quota("0::/\n", _reader({"cpu.max": "50000 100000"})) == 0.5  # a container's own root
    assert cpu_quota("4:cpu,cpuacct:/a\n", _reader(files)) is None  # cgroup v1 lines are not v2's
    assert cpu_quota("0::/x\n", _reader({"x/cpu.max": "garbage"})) is None
