from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgefleet.accelerators.quant import ReferenceExecutor, lower_model
from edgefleet.simulators.errors import BoardMismatch, DeviceBusy, DeviceTimeout, NotProgrammed, ProgrammingFailed
from edgefleet.simulators.fpga.boards import get_board
from edgefleet.simulators.fpga.compiler import compile_model
from edgefleet.simulators.fpga.device import SimulatedBoard
from edgefleet.simulators.fpga.faults import FaultInjector

KV260 = get_board("kv260")


@pytest.fixture(scope="module")
def binaries(tiny_int8_model: Path) -> dict[str, bytes]:
    return {
        "kv260": compile_model(tiny_int8_model, KV260).binary,
        "kv260-relaxed": compile_model(tiny_int8_model, KV260, max_utilization=0.5).binary,
        "u250": compile_model(tiny_int8_model, get_board("u250")).binary,
    }


def _feeds(batch: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).random((batch, 1, 8, 8), dtype=np.float32)}


def test_runs_exactly_like_the_reference_and_reports_modelled_timing(
    tiny_int8_model: Path, binaries: dict[str, bytes]
) -> None:
    board = SimulatedBoard(KV260)
    board.program(binaries["kv260"])
    result = board.run(_feeds(3))
    expected = ReferenceExecutor(lower_model(tiny_int8_model)).run(_feeds(3))
    np.testing.assert_array_equal(result.outputs["y"], expected["y"])
    report = compile_model(tiny_int8_model, KV260).report
    timing = result.timing
    assert timing.kernel_cycles == report.latency_cycles + 2 * report.ii_cycles
    assert timing.kernel_us == pytest.approx(timing.kernel_cycles / 300.0)
    assert [t.cycles for t in timing.layers] == [e.cycles for e in report.layers if e.cycles]
    assert timing.transfer_us == pytest.approx((3 * 256 + 3 * 40) / 19.2e3)  # bytes / (GB/s) in us
    assert timing.throughput_fps == pytest.approx(3 / (timing.total_us * 1e-6))


def test_a_binary_for_another_board_is_refused(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(KV260)
    with pytest.raises(BoardMismatch, match=r"built for board 'u250'.*--board kv260"):
        board.program(binaries["u250"])
    assert board.loaded_binary is None


def test_a_binary_for_another_shell_is_refused(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(dataclasses.replace(KV260, shell_id="xilinx_kv260_base_202410_1"))
    with pytest.raises(BoardMismatch, match="targets shell 'xilinx_kv260_base_202220_1'"):
        board.program(binaries["kv260"])


def test_the_same_binary_is_not_reprogrammed(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(KV260)
    first = board.program(binaries["kv260"])
    second = board.program(binaries["kv260"])
    assert first.reprogrammed and not second.reprogrammed
    assert first.content_id == second.content_id == board.loaded_binary


def test_a_busy_board_is_not_reprogrammed_until_idle(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(KV260)
    old = board.program(binaries["kv260"]).content_id
    handle = board.enqueue(_feeds())
    assert board.busy
    with pytest.raises(DeviceBusy, match="only when idle"):
        board.program(binaries["kv260-relaxed"])
    assert board.loaded_binary == old
    board.program(binaries["kv260"])  # the loaded binary itself: nothing to do, so no refusal
    handle.wait()
    assert not board.busy
    assert board.program(binaries["kv260-relaxed"]).reprogrammed


def test_running_an_empty_board_says_to_program_it() -> None:
    with pytest.raises(NotProgrammed, match="no binary loaded"):
        SimulatedBoard(KV260).run(_feeds())


def test_program_fail_fault_leaves_the_board_empty(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(KV260, FaultInjector.from_spec("program_fail"))
    with pytest.raises(ProgrammingFailed, match="injected fault 'program_fail'"):
        board.program(binaries["kv260"])
    assert board.loaded_binary is None


def test_timeout_fault_raises_and_frees_the_board(binaries: dict[str, bytes]) -> None:
    board = SimulatedBoard(KV260, FaultInjector.from_spec("timeout"))
    board.program(binaries["kv260"])
    with pytest.raises(DeviceTimeout, match="watchdog"):
        board.run(_feeds())
    assert not board.busy


def test_wrong_results_fault_corrupts_outputs(binaries: dict[str, bytes]) -> None:
    honest, faulty = SimulatedBoard(KV260), SimulatedBoard(KV260, FaultInjector.from_spec("wrong_results", seed=3))
    honest.program(binaries["kv260"])
    faulty.program(binaries["kv260"])
    assert not np.array_equal(honest.run(_feeds()).outputs["y"], faulty.run(_feeds()).outputs["y"])


def test_loaded_binary_survives_the_process_in_the_state_dir(binaries: dict[str, bytes], tmp_path: Path) -> None:
    first = SimulatedBoard(KV260, state_dir=tmp_path)
    content_id = first.program(binaries["kv260"]).content_id
    second = SimulatedBoard(KV260, state_dir=tmp_path)  # as another process would see the board
    assert second.loaded_binary == content_id
    assert not second.program(binaries["kv260"]).reprogrammed
    np.testing.assert_array_equal(second.run(_feeds()).outputs["y"], first.run(_feeds()).outputs["y"])


def test_damaged_state_means_an_empty_board(binaries: dict[str, bytes], tmp_path: Path) -> None:
    SimulatedBoard(KV260, state_dir=tmp_path).program(binaries["kv260"])
    (tmp_path / "kv260.bin").write_bytes(b"garbage")
    assert SimulatedBoard(KV260, state_dir=tmp_path).loaded_binary is None
