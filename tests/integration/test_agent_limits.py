"""Resource limits on real module processes, checked against what the kernel enforces, and
admission end to end (a module the device cannot provide is Unschedulable and never started).

On this host ``auto`` picks whatever the probe finds usable (cgroup v2 or v1 when writable); the
fallback (affinity + RLIMIT_DATA) is forced with ``no-cgroups`` so both real paths run here.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.daemon import Agent
from edgefleet.agent.observed import Instance
from edgefleet.agent.runtime import ProcessRuntime
from edgefleet.agent.runtime.limits import LimitsMode, Mechanism, ProcessLimits
from edgefleet.agent.settings import AgentSettings, DiscoverySettings, ModulesSettings, MqttSettings, ReportingSettings
from edgefleet.protocol import ModuleSpec
from tests.support.agent_harness import (
    FAKE_MODULE,
    TestHub,
    kill_module_processes,
    module_pids,
    module_state,
)
from tests.support.artifact_server import ArtifactServer
from tests.support.limits_probe import kernel_limits, remove_device_cgroups
from tests.support.processes import Mosquitto, free_port, wait_for

MiB = 1024**2
WAIT_S = 60.0


@pytest.fixture
def device_id() -> Iterator[str]:
    dev = f"lim-{uuid.uuid4().hex[:8]}"
    yield dev
    kill_module_processes(dev)
    remove_device_cgroups(dev)


def start_module(rt: ProcessRuntime, root: Path, resources: dict[str, float]) -> Instance:
    spec = ModuleSpec.model_validate({"name": "m", "service": "svc", "resources": resources})
    workdir = root / "m" / spec.spec_hash()
    for sub in ("model", "src"):
        (workdir / sub).mkdir(parents=True)
    iid = rt.create(spec, spec.spec_hash(), free_port(), workdir)
    rt.start(iid)

    def ready() -> Instance | None:
        (inst,) = rt.list_instances()
        return inst if inst.status is not None and inst.status.state == "Ready" else None

    found = wait_for(ready, WAIT_S, what="the module Ready")
    assert found is not None
    return found


def runtime(tmp_path: Path, device_id: str, mode: LimitsMode) -> ProcessRuntime:
    return ProcessRuntime(tmp_path / "modules", device_id, FAKE_MODULE, ProcessLimits(device_id, mode))


def test_auto_limits_are_what_the_kernel_enforces_and_groups_go_with_the_instance(
    tmp_path: Path, device_id: str
) -> None:
    rt = runtime(tmp_path, device_id, "auto")
    inst = start_module(rt, tmp_path / "modules", {"cpu": 0.5, "memoryInGB": 0.125})
    assert inst.pid is not None
    mechanism = rt.limits.mechanism
    assert inst.limits is not None and inst.limits.startswith(mechanism.value + ": cpu 0.5 cores, memory 0.125 GB")
    seen = kernel_limits(inst.pid)
    if mechanism in (Mechanism.CGROUP_V1, Mechanism.CGROUP_V2):
        assert (seen.cgroup_cpu, seen.cgroup_memory) == (0.5, 128 * MiB)
        assert seen.cgroup_dirs and all(d.name == inst.instance_id.replace("@", ".") for d in seen.cgroup_dirs)
        assert all(d.parent.name == f"edgefleet-{device_id}" for d in seen.cgroup_dirs)
    else:  # no writable cgroup on this host: the fallback is what auto must have chosen
        assert mechanism == Mechanism.AFFINITY_RLIMIT
        assert (len(seen.affinity), seen.rlimit_data) == (1, 128 * MiB)

    # a restart joins the same limits; an agent restarted since (a new runtime) reports them too
    rt.stop(inst.instance_id, 5)
    rt.start(inst.instance_id)
    again = runtime(tmp_path, device_id, "auto")
    (adopted,) = again.list_instances()
    assert adopted.pid != inst.pid and adopted.limits == inst.limits
    assert adopted.pid is not None and kernel_limits(adopted.pid) == seen

    again.stop(inst.instance_id, 5)
    again.remove(inst.instance_id)
    for d in seen.cgroup_dirs:
        assert not d.exists() and not d.parent.exists()  # the instance's group, then the device's


def test_fallback_pins_cores_and_sets_rlimit_data(tmp_path: Path, device_id: str) -> None:
    rt = runtime(tmp_path, device_id, "no-cgroups")
    inst = start_module(rt, tmp_path / "modules", {"cpu": 1, "memoryInGB": 0.5})
    assert inst.pid is not None
    seen = kernel_limits(inst.pid)
    assert seen.rlimit_data == 512 * MiB
    assert len(seen.affinity) == 1 and seen.affinity < os.sched_getaffinity(0) | seen.affinity
    assert inst.limits == (
        f"affinity+rlimit: cpu 1 cores as affinity to cpus {min(seen.affinity)}, memory 0.5 GB as RLIMIT_DATA"
    )
    assert seen.cgroup_dirs == ()  # and no cgroup was made
    # the agent itself is not limited by what it set up for its child
    assert kernel_limits(os.getpid()).rlimit_data != 512 * MiB


def test_no_resources_asked_no_limits(tmp_path: Path, device_id: str) -> None:
    rt = runtime(tmp_path, device_id, "auto")
    inst = start_module(rt, tmp_path / "modules", {})
    assert inst.limits is None and inst.pid is not None
    seen = kernel_limits(inst.pid)
    assert (seen.cgroup_dirs, seen.rlimit_data) == ((), kernel_limits(os.getpid()).rlimit_data)


# --- through the agent: the report says which limits; admission refuses what the device lacks ------


def test_agent_reports_limits_and_refuses_what_the_device_cannot_provide(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    settings = AgentSettings(
        device_id=device_id,
        data_dir=tmp_path / "agent",
        hub_public_key=hub.key.public_key_b64,
        mqtt=MqttSettings(broker_url=mosquitto.url),
        modules=ModulesSettings(command=FAKE_MODULE, resource_limits="no-cgroups"),
        discovery=DiscoverySettings(command=[sys.executable, "-c", "print('[]')"]),  # no accelerators here
        reporting=ReportingSettings(heartbeat_s=5.0),
    )
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("m.onnx", b"weights" * 100)
            health = {"intervalS": 0.3, "timeoutS": 1.0, "startupTimeoutS": 30}

            def spec(name: str, **fields: object) -> ModuleSpec:
                body = {"name": name, "service": "svc", "artifacts": [model.to_wire()], "health": health, **fields}
                return ModuleSpec.model_validate(body)

            too_big = os.cpu_count() or 1
            hub.publish(
                1,
                [
                    spec("small", resources={"cpu": 1, "memoryInGB": 0.5}),
                    spec("greedy", resources={"cpu": too_big + 1}),
                    spec("fpga", accelerator={"prefer": ["fpga"], "required": True}),
                ],
            )
            report = hub.wait_report(
                lambda r: (
                    module_state(r, "small") == "Healthy"
                    and module_state(r, "greedy") == "Unschedulable"
                    and module_state(r, "fpga") == "Unschedulable"
                ),
                timeout=WAIT_S,
                what="small Healthy, greedy and fpga Unschedulable",
            )
            by_name = {m.name: m for m in report.modules}
            assert by_name["small"].limits is not None
            assert by_name["small"].limits.startswith("affinity+rlimit: cpu 1 cores as affinity to cpus ")
            assert f"asks for {too_big + 1} cores; this device has {too_big}" in by_name["greedy"].message
            assert "none of fpga was discovered" in by_name["fpga"].message
            assert by_name["greedy"].limits is None
            # nothing was started for the refused modules
            assert module_pids(device_id, "greedy") == [] and module_pids(device_id, "fpga") == []
            (pid,) = module_pids(device_id, "small")
            assert kernel_limits(pid).rlimit_data == 512 * MiB
    finally:
        agent.request_stop()
        thread.join(20)
        hub.close()
