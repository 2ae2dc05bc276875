from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefleet.accelerators import selection
from edgefleet.accelerators.base import Backend, LoadedModel, Support, TensorInfo
from edgefleet.accelerators.cpu import CpuBackend, OrtLoadedModel
from edgefleet.accelerators.errors import NoVerifiedAccelerator
from edgefleet.accelerators.selection import CandidateReport, choose, compare_outputs, golden_input, select_backend
from edgefleet.protocol.models import AcceleratorInfo
from tests.support.quant_models import MLP_INT8


def test_golden_input_is_deterministic_and_uses_the_batch() -> None:
    infos = [TensorInfo("x", "float32", (None, 1, 8, 8)), TensorInfo("q", "uint8", (None, 4))]
    a, b = golden_input(infos, 3), golden_input(infos, 3)
    assert a["x"].shape == (3, 1, 8, 8) and a["x"].dtype == np.float32
    assert a["q"].shape == (3, 4) and a["q"].dtype == np.uint8
    np.testing.assert_array_equal(a["x"], b["x"])


def test_compare_outputs_accepts_rounding_and_rejects_wrong_results() -> None:
    ref = {"y": np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)}
    assert compare_outputs({"y": ref["y"] + 0.01}, ref) is None
    close = {"y": np.array([[0.0, 0.0, 10.0, 10.01]], np.float32)}
    assert "argmax" in (compare_outputs({"y": np.array([[0.0, 0.0, 10.01, 10.0]], np.float32)}, close) or "")
    assert "within" in (compare_outputs({"y": ref["y"] + 1.0}, ref) or "")
    assert "shape" in (compare_outputs({"y": ref["y"].T}, ref) or "")
    assert "missing" in (compare_outputs({}, ref) or "")
    q = {"y": np.array([[10, 20, 30]], np.uint8)}
    assert compare_outputs({"y": np.array([[11, 19, 30]], np.uint8)}, q) is None
    assert compare_outputs({"y": np.array([[13, 20, 30]], np.uint8)}, q) is not None


def test_choose_picks_the_fastest_verified_within_the_preference() -> None:
    reports = [
        CandidateReport("fpga", False, reason="no fpga device found"),
        CandidateReport("opencl", True, 0.4, "verified"),
        CandidateReport("cpu", True, 0.6, "reference"),
    ]
    kind, reason = choose(reports, ["fpga", "opencl", "cpu"], False, 1)
    assert kind == "opencl"
    assert reason.startswith("opencl: verified, 0.4 ms vs cpu 0.6 ms at batch 1")
    assert "fpga: no fpga device found" in reason


def test_choose_prefers_cpu_when_it_is_faster() -> None:
    reports = [CandidateReport("opencl", True, 2.0, "verified"), CandidateReport("cpu", True, 0.5, "reference")]
    assert choose(reports, ["opencl", "cpu"], False, 64)[0] == "cpu"


def test_choose_falls_back_or_refuses_when_nothing_verified() -> None:
    reports = [CandidateReport("opencl", False, reason="unsupported: op Sigmoid")]
    kind, reason = choose(reports, ["opencl"], False, 1)
    assert kind == "cpu" and reason == "fell back to cpu: opencl: unsupported: op Sigmoid"
    kind, reason = choose(reports, ["opencl", "cpu"], True, 1)
    assert kind is None and "required (opencl)" in reason and "Sigmoid" in reason


class _WrongModel(LoadedModel):
    """An accelerator that returns plausible-looking but wrong numbers (like a faulty FPGA)."""

    backend = "fake"

    def __init__(self, inner: OrtLoadedModel) -> None:
        self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.roll(v, 1, axis=-1) for k, v in self.inner.run(feeds).items()}


class _FakeBackend(Backend):
    kind = "fpga"

    def __init__(self, wrong: bool, devices: bool = True) -> None:
        self.wrong, self.devices = wrong, devices

    def probe(self) -> list[AcceleratorInfo]:
        return [AcceleratorInfo(kind="fpga", device="fake", simulated=True)] if self.devices else []

    def supports(self, model: onnx.ModelProto) -> Support:
        return Support(True)

    def load(self, model_path: Path) -> LoadedModel:
        inner = OrtLoadedModel(model_path)
        return _WrongModel(inner) if self.wrong else inner


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_wrong_results_are_caught_and_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "available_backends", lambda: {"cpu": CpuBackend(), "fpga": _FakeBackend(True)})
    chosen = select_backend(MLP_INT8, ["fpga", "cpu"])
    assert chosen.backend == "cpu"
    assert "fpga: golden input differs from onnxruntime" in chosen.reason
    assert [c.kind for c in chosen.candidates] == ["fpga", "cpu"] and not chosen.candidates[0].verified
    with pytest.raises(NoVerifiedAccelerator, match="fpga: golden input differs"):
        select_backend(MLP_INT8, ["fpga", "cpu"], required=True)


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_backend_without_device_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        selection, "available_backends", lambda: {"cpu": CpuBackend(), "fpga": _FakeBackend(False, devices=False)}
    )
    chosen = select_backend(MLP_INT8, ["fpga", "opencl"], batch_size=4)
    assert chosen.backend == "cpu"
    assert chosen.reason == "fell back to cpu: fpga: no fpga device found; opencl: no opencl backend on this device"


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_verified_accelerator_is_timed_and_can_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "available_backends", lambda: {"cpu": CpuBackend(), "fpga": _FakeBackend(False)})
    chosen = select_backend(MLP_INT8, ["fpga"], required=True)
    assert chosen.backend == "fpga" and chosen.reason.startswith("fpga: verified")
    assert set(chosen.timings_ms) == {"fpga"} and chosen.timings_ms["fpga"] > 0
