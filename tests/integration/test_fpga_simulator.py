"""The simulated FPGA path end to end: discovery through the driver plugin, compile, program, run,
exact arithmetic, and the selector's fall-back when the board misbehaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefleet.accelerators.errors import NoVerifiedAccelerator
from edgefleet.accelerators.fpga import FpgaBackend, FpgaLoadedModel
from edgefleet.accelerators.quant import DequantizeLayer, ReferenceExecutor, lower_model
from edgefleet.accelerators.selection import select_backend
from edgefleet.simulators.fpga.boards import get_board
from edgefleet.simulators.fpga.compiler import compile_model, unpack_binary

DIGITS = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"
MODEL = DIGITS / "digits_int8.onnx"


@pytest.fixture
def simulated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A simulated KV260 with private state and compile cache; no faults unless a test sets them."""
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM", "kv260")
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_STATE_DIR", str(tmp_path / "boards"))
    monkeypatch.setenv("EDGEFLEET_FPGA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_SEED", "1")
    monkeypatch.delenv("EDGEFLEET_FPGA_SIM_FAULTS", raising=False)
    return tmp_path


def _images() -> np.ndarray:
    return np.load(DIGITS / "test_set.npz")["images"].astype(np.float32)


def test_simulated_board_is_discovered_like_a_real_one(simulated: Path) -> None:
    (info,) = FpgaBackend().probe()
    assert (info.kind, info.board, info.shell_id, info.simulated) == (
        "fpga",
        "kv260",
        get_board("kv260").shell_id,
        True,
    )
    assert info.loaded_binary is None and info.device_type == "ACCELERATOR"


def test_no_setting_no_board(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEFLEET_FPGA_SIM", raising=False)
    backend = FpgaBackend()
    assert backend.probe() == []
    assert "EDGEFLEET_FPGA_SIM" in backend.supports(onnx.load(str(MODEL))).reason


def test_digits_runs_exactly_on_the_simulated_board(simulated: Path) -> None:
    backend = FpgaBackend()
    loaded = backend.load(MODEL)
    assert isinstance(loaded, FpgaLoadedModel)
    assert loaded.content_id == backend.probe()[0].loaded_binary
    assert loaded.content_id == compile_model(MODEL, get_board("kv260")).content_id

    images = _images()
    fpga = loaded.run({"input": images})["logits"]
    graph = lower_model(MODEL)
    reference = ReferenceExecutor(graph).run({"input": images})["logits"]
    np.testing.assert_array_equal(fpga, reference)  # the same int8 arithmetic, bit for bit

    onnxrt = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"input": images})[0]
    lsb = float(next(layer for layer in graph.layers if isinstance(layer, DequantizeLayer)).x.scale)
    within = np.abs(fpga - onnxrt) <= lsb * 1.0001
    assert within.mean() >= 0.999
    assert (fpga.argmax(axis=1) == onnxrt.argmax(axis=1)).all()

    timing = loaded.device.last_timing  # type: ignore[attr-defined]
    assert timing.batch == len(images) and timing.kernel_cycles > 0 and timing.throughput_fps > 0


def test_second_load_reuses_the_cache_and_does_not_reprogram(simulated: Path) -> None:
    first = FpgaBackend().load(MODEL)
    cached = list((simulated / "cache").iterdir())
    assert len(cached) == 1 and unpack_binary(cached[0].read_bytes()).content_id == first.content_id
    programmed = (simulated / "boards" / "kv260.bin").stat().st_mtime_ns
    second = FpgaBackend().load(MODEL)
    assert second.content_id == first.content_id
    assert (simulated / "boards" / "kv260.bin").stat().st_mtime_ns == programmed


def test_a_binary_shipped_next_to_the_model_is_used(simulated: Path, tmp_path: Path) -> None:
    model = tmp_path / "digits_int8.onnx"
    model.write_bytes(MODEL.read_bytes())
    shipped = compile_model(model, get_board("kv260"), max_utilization=0.5)
    (tmp_path / "digits_int8.kv260.efsim").write_bytes(shipped.binary)
    assert FpgaBackend().load(model).content_id == shipped.content_id
    assert not (simulated / "cache").exists()  # nothing compiled


def test_a_shipped_binary_for_another_shell_is_refused_with_the_reason(simulated: Path, tmp_path: Path) -> None:
    model = tmp_path / "digits_int8.onnx"
    model.write_bytes(MODEL.read_bytes())
    (tmp_path / "digits_int8.kv260.efsim").write_bytes(compile_model(model, get_board("u250")).binary)
    with pytest.raises(Exception, match="built for board 'u250'"):
        FpgaBackend().load(model)


def test_wrong_results_are_caught_by_the_numeric_check(simulated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_FAULTS", "wrong_results")
    selection = select_backend(MODEL, ["fpga", "cpu"])
    assert selection.backend == "cpu"
    # the numeric check's verdict (golden input through the board and through onnxruntime)
    assert "fpga: golden input differs from onnxruntime" in selection.reason


def test_program_failure_falls_back_to_cpu(simulated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_FAULTS", "program_fail")
    selection = select_backend(MODEL, ["fpga", "cpu"])
    assert selection.backend == "cpu"
    assert "program_fail" in selection.reason


def test_required_accelerator_with_a_faulty_board_is_unschedulable(
    simulated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_FAULTS", "wrong_results")
    with pytest.raises(NoVerifiedAccelerator, match="fpga: golden input differs from onnxruntime"):
        select_backend(MODEL, ["fpga"], required=True)


def test_a_healthy_simulated_board_passes_verification(simulated: Path) -> None:
    selection = select_backend(MODEL, ["fpga", "cpu"])
    fpga = next(c for c in selection.candidates if c.kind == "fpga")
    assert fpga.verified, fpga.reason


def test_a_timing_out_board_falls_back_to_cpu(simulated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_FPGA_SIM_FAULTS", "timeout")
    selection = select_backend(MODEL, ["fpga", "cpu"])
    assert selection.backend == "cpu"
    assert "watchdog" in selection.reason
