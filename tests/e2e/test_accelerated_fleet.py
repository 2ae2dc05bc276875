"""Accelerators end to end: agents discover a (simulated) FPGA and the OpenCL device, modules
select a verified backend, and the hub shows the choice and its reason."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.e2e.conftest import Fleet
from tests.support.processes import wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"


def _online(fleet: Fleet, ids: set[str]) -> bool:
    devices = fleet.cli_json("device", "list")
    return {d["deviceId"] for d in devices if d.get("presence") == "online"} >= ids


def _deploy(fleet: Fleet, tmp_path: Path, name: str, deployment: dict[str, object]) -> dict:
    dc = tmp_path / f"{name}-deploymentconfig.json"
    dc.write_text(json.dumps({"computeType": "edge", **deployment}))
    fleet.cli(
        "model", "deploy", "-n", name, "-m", "digits:1",
        "--ic", str(SAMPLE / "inferenceconfig.json"), "--dc", str(dc), check=False, timeout=300,
    )  # fmt: skip
    service: dict = fleet.cli_json("service", "show", name)
    return service


@pytest.mark.opencl
@pytest.mark.timeout(600)
def test_fpga_opencl_and_fault_fallback_across_a_fleet(fleet: Fleet, tmp_path: Path) -> None:
    sim_state = str(tmp_path / "fpga-state")
    fleet.start_agent(
        "edge-fpga", "role=fpga", env={"EDGEFLEET_FPGA_SIM": "kv260", "EDGEFLEET_FPGA_SIM_STATE_DIR": sim_state + "-1"}
    )
    fleet.start_agent(
        "edge-faulty",
        "role=fpga",
        env={
            "EDGEFLEET_FPGA_SIM": "kv260",
            "EDGEFLEET_FPGA_SIM_FAULTS": "wrong_results",
            "EDGEFLEET_FPGA_SIM_STATE_DIR": sim_state + "-2",
        },
    )
    fleet.start_agent("edge-gpu", "role=gpu")
    wait_for(lambda: _online(fleet, {"edge-fpga", "edge-faulty", "edge-gpu"}), timeout=60, what="agents online")

    # discovery reaches the hub as capabilities, so targets can say "devices with an FPGA"
    def fpga_capable() -> set[str]:
        return {
            d["deviceId"]
            for d in fleet.cli_json("device", "list")
            if any(
                a["kind"] == "fpga"
                for a in ((d.get("lastReport") or {}).get("capabilities") or {}).get("accelerators", [])
            )
        }

    wait_for(lambda: fpga_capable() == {"edge-fpga", "edge-faulty"}, timeout=60, what="FPGA capabilities reported")
    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))

    fpga = _deploy(
        fleet, tmp_path, "digits-fpga",
        {"target": {"accelerators": ["fpga"]}, "accelerator": {"prefer": ["fpga", "cpu"], "required": False}},
    )  # fmt: skip
    by_device = {d["device"]: d for d in fpga["devices"]}
    assert set(by_device) == {"edge-fpga", "edge-faulty"}, fpga
    assert by_device["edge-fpga"]["state"] == "Healthy"
    assert by_device["edge-fpga"]["backend"] == "fpga", by_device["edge-fpga"]
    assert "fpga: verified" in by_device["edge-fpga"]["reason"]
    # the simulated board returns wrong results: the numeric check catches it, CPU serves
    assert by_device["edge-faulty"]["state"] == "Healthy"
    assert by_device["edge-faulty"]["backend"] == "cpu", by_device["edge-faulty"]
    assert "golden input differs from onnxruntime" in by_device["edge-faulty"]["reason"]

    opencl = _deploy(
        fleet, tmp_path, "digits-ocl",
        {"target": {"labels": {"role": "gpu"}}, "accelerator": {"prefer": ["opencl"], "required": True}},
    )  # fmt: skip
    (gpu,) = opencl["devices"]
    assert gpu["state"] == "Healthy" and gpu["backend"] == "opencl", gpu

    # the numeric contract through the served endpoints: top-1 identical to onnxruntime on every test image
    test = np.load(SAMPLE / "test_set.npz")
    images = test["images"]
    session = ort.InferenceSession(str(SAMPLE / "digits_int8.onnx"), providers=["CPUExecutionProvider"])
    expected = np.argmax(session.run(None, {"input": images})[0], axis=1).tolist()
    for device in [by_device["edge-fpga"], by_device["edge-faulty"], gpu]:
        r = httpx.post(device["endpoint"] + "/score", json={"data": images.reshape(-1, 64).tolist()}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected, device["device"]
