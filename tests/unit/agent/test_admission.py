"""Admission: which modules a device can provide, and that the planner touches nothing for the others."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.agent.admission import BYTES_PER_GB, DeviceOffer, admit
from edgefleet.agent.observed import Health, Instance, Observed
from edgefleet.agent.plan import CreateModule, FetchArtifact, PlanContext, ProbeHealth, StartModule, plan_steps
from edgefleet.protocol import DeviceManifest, ModuleSpec, ModuleState
from edgefleet.protocol.models import AcceleratorInfo, DeviceCapabilities

PROCESS = frozenset({"process"})
DEVICE = DeviceOffer(cpu_count=4, memory_bytes=8 * BYTES_PER_GB, accelerators=frozenset({"opencl"}))
U, T = ModuleState.UNSCHEDULABLE, ModuleState.TRANSITIONING


def spec(name: str = "m", **fields: Any) -> ModuleSpec:
    return ModuleSpec.model_validate({"name": name, "service": "svc", **fields})


def fpga_only(required: bool = True) -> dict[str, Any]:
    return {"accelerator": {"prefer": ["fpga"], "required": required}}


CASES = [
    # (modules in startup order, runtimes, device) -> {module: (state, words in the reason)}
    pytest.param([spec()], PROCESS, DEVICE, {}, id="nothing-asked"),
    pytest.param([spec(resources={"cpu": 4, "memoryInGB": 8})], PROCESS, DEVICE, {}, id="exactly-the-device"),
    pytest.param(
        [spec(resources={"cpu": 4.5})], PROCESS, DEVICE, {"m": (U, ["resources.cpu", "4.5 cores", "has 4"])}, id="cpu"
    ),
    pytest.param(
        [spec(resources={"memoryInGB": 9})], PROCESS, DEVICE, {"m": (U, ["memoryInGB", "9 GB", "8 GB"])}, id="memory"
    ),
    pytest.param(
        [spec("a", resources={"memoryInGB": 5}), spec("b", resources={"memoryInGB": 4}), spec("c")],
        PROCESS,
        DEVICE,
        {"b": (U, ["4 GB", "already commit 5 GB", "of this device's 8 GB"])},
        id="memory-summed-in-startup-order",
    ),
    pytest.param(
        [spec("a", resources={"memoryInGB": 9}), spec("b", resources={"memoryInGB": 8})],
        PROCESS,
        DEVICE,
        {"a": (U, ["9 GB"])},
        id="refused-module-commits-nothing",
    ),
    pytest.param(
        [spec(resources={"cpu": 64, "memoryInGB": 512})],
        PROCESS,
        DeviceOffer(),
        {},
        id="unknown-device-size-is-not-judged",
    ),
    pytest.param(
        [spec(runtime="docker", image="x")],
        PROCESS,
        DEVICE,
        {"m": (U, ["runtime 'docker' is not available", "it has: process"])},
        id="runtime",
    ),
    pytest.param(
        [spec(runtime="docker", image="x")], frozenset({"process", "docker"}), DEVICE, {}, id="runtime-present"
    ),
    pytest.param(
        [spec(**fpga_only())],
        PROCESS,
        DEVICE,
        {"m": (U, ["accelerator.required", "none of fpga", "found: opencl"])},
        id="required-accelerator-missing",
    ),
    pytest.param(
        [spec(accelerator={"prefer": ["fpga", "opencl"], "required": True})],
        PROCESS,
        DEVICE,
        {},
        id="required-one-of-preferred-present",
    ),
    pytest.param([spec(**fpga_only(required=False))], PROCESS, DEVICE, {}, id="preferred-not-required"),
    pytest.param(
        [spec(accelerator={"prefer": ["fpga", "cpu"], "required": True})],
        PROCESS,
        DEVICE,
        {},
        id="cpu-is-always-there",
    ),
    pytest.param(
        [spec(**fpga_only())],
        PROCESS,
        DeviceOffer(accelerators=None),
        {"m": (T, ["waiting for accelerator discovery", "fpga"])},
        id="discovery-pending-waits",
    ),
    pytest.param(
        [spec(runtime="docker", image="x", **fpga_only())],
        PROCESS,
        DeviceOffer(accelerators=None),
        {"m": (U, ["runtime 'docker'"])},
        id="known-refusal-beats-waiting",
    ),
]


@pytest.mark.parametrize(("specs", "runtimes", "device", "expected"), CASES)
def test_admit(
    specs: list[ModuleSpec],
    runtimes: frozenset[str],
    device: DeviceOffer,
    expected: dict[str, tuple[ModuleState, list[str]]],
) -> None:
    refused = admit(specs, runtimes, device)
    assert {name: r.state for name, r in refused.items()} == {name: s for name, (s, _) in expected.items()}
    for name, (_, words) in expected.items():
        for word in words:
            assert word in refused[name].reason, (word, refused[name].reason)


def test_offer_from_capabilities_waits_for_discovery() -> None:
    caps = DeviceCapabilities(cpu_count=2, memory_bytes=1000, accelerators=[AcceleratorInfo(kind="fpga")])
    assert DeviceOffer.from_capabilities(caps, discovered=True) == DeviceOffer(2, 1000, frozenset({"fpga"}))
    assert DeviceOffer.from_capabilities(caps, discovered=False).accelerators is None


def test_planner_stops_and_fetches_nothing_for_an_unschedulable_update() -> None:
    """v1 runs; v2 of the same module asks for more memory than the device has: v1 keeps serving."""
    art: dict[str, Any] = {"path": "model/m.onnx", "digest": "sha256:" + "1" * 64, "size": 1, "url": "http://h/1"}
    v1 = spec(artifacts=[art])
    v2 = spec(artifacts=[{**art, "digest": "sha256:" + "2" * 64, "url": "http://h/2"}], resources={"memoryInGB": 16})
    other = spec("other", artifacts=[{**art, "digest": "sha256:" + "3" * 64, "url": "http://h/3"}])
    running = Instance(f"m@{v1.spec_hash()}", "m", v1.spec_hash(), running=True, pid=10, port=20001)
    observed = Observed(
        instances=(running,),
        cached=frozenset({art["digest"]}),
        health={running.instance_id: Health(started_at=0, ready=True, last_probe_at=99)},
    )
    ctx = PlanContext(now=100, device=DEVICE)
    plan = plan_steps(DeviceManifest(device_id="d", generation=2, modules=[v2, other]), observed, ctx)
    assert plan.verdicts["m"].state == U and "16 GB" in plan.verdicts["m"].message
    # only the schedulable module is worked on; the old m instance is neither stopped nor probed away
    assert plan.steps == (FetchArtifact("sha256:" + "3" * 64, "http://h/3", 1),)
    cached = Observed(instances=observed.instances, cached=frozenset({art["digest"], "sha256:" + "3" * 64}))
    plan = plan_steps(DeviceManifest(device_id="d", generation=2, modules=[v2, other]), cached, ctx)
    assert [type(s) for s in plan.steps] == [CreateModule, StartModule]
    assert all(getattr(s, "module", None) == "other" for s in plan.steps)
    assert not any(isinstance(s, ProbeHealth) and s.module == "m" for s in plan.steps)
