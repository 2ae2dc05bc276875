from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgefleet.simulators.errors import BinaryFormatError, DesignDoesNotFit
from edgefleet.simulators.fpga.boards import get_board
from edgefleet.simulators.fpga.compiler import (
    Folding,
    bram18_for_memory,
    compile_model,
    estimate_layer,
    fold_for_reuse,
    fold_for_target,
    pack_binary,
    plan_design,
    unpack_binary,
)
from edgefleet.simulators.fpga.layers import GraphShape, LayerShape

KV260 = get_board("kv260")
DENSE = LayerShape("fc", "QGemm", "mac", mw=32, mh=10, vectors=1)
CONV = LayerShape("conv", "QLinearConv", "mac", mw=9, mh=8, vectors=64, window=(3, 3), in_width=8, in_channels=1)


def test_dense_resources_follow_hls4ml_and_finn() -> None:
    est = estimate_layer(DENSE, Folding(pe=5, simd=8), KV260, 0)
    assert est.reuse_factor == (32 // 8) * (10 // 5) == 8
    assert est.multipliers == 32 * 10 // 8  # hls4ml: n_in * n_out / RF
    assert est.dsp == 40 // 2 + 5  # two int8 MACs per DSP48E2, plus one requantization DSP per PE
    assert est.cycles == 8  # FINN: V * (MH/PE) * (MW/SIMD)
    assert est.luts == 400 + 32 * 40 + 64 * 5 + 40 * 8  # weights 40*8 bits wide, 8 deep: LUTRAM


def test_conv_cycles_count_every_output_pixel() -> None:
    est = estimate_layer(CONV, Folding(pe=8, simd=9), KV260, 1)
    assert est.cycles == 64 and est.reuse_factor == 1
    assert est.dsp == 72 // 2 + 8
    assert est.kernel == "k01_qlinearconv"


def test_folding_must_divide_the_matrix() -> None:
    with pytest.raises(ValueError, match="PE 3 must divide MH 10"):
        estimate_layer(DENSE, Folding(pe=3, simd=1), KV260, 0)


@pytest.mark.parametrize(
    ("width", "depth", "bram18"),
    [(36, 512, 1), (72, 512, 2), (18, 1024, 1), (9, 2048, 1), (8, 4096, 2), (1, 16384, 1), (1, 20000, 2), (0, 5, 0)],
)
def test_finn_bram18_estimate(width: int, depth: int, bram18: int) -> None:
    assert bram18_for_memory(width, depth) == bram18


def test_fold_for_target_picks_the_least_parallel_folding_that_meets_it() -> None:
    folding = fold_for_target(DENSE, target_cycles=64)
    assert folding.pe * folding.simd == 5  # 320 MACs in <= 64 cycles needs 5 multipliers
    assert fold_for_target(DENSE, target_cycles=1) == Folding(10, 32)
    assert fold_for_target(CONV, target_cycles=10) == Folding(8, 9)  # cannot beat one pixel per cycle


def test_fold_for_reuse_respects_the_reuse_factor() -> None:
    folding = fold_for_reuse(DENSE, 16)
    assert (DENSE.mw // folding.simd) * (DENSE.mh // folding.pe) <= 16


def test_search_finds_a_design_that_fits_and_balances_the_pipeline() -> None:
    report = plan_design(GraphShape([CONV, DENSE], 256, 40), KV260)
    assert report.fits and not report.over
    assert report.ii_cycles == 64  # the conv bounds the II; the dense layer is folded down to it
    assert report.layers[1].cycles <= 64 and report.layers[1].multipliers == 5
    assert report.latency_cycles == sum(e.cycles for e in report.layers)
    assert report.throughput_fps == pytest.approx(300e6 / 64)
    assert report.transfer_us == pytest.approx(296 / 19.2e9 * 1e6)


def test_weights_beyond_block_ram_do_not_fit_even_fully_folded() -> None:
    huge = LayerShape("big", "QGemm", "mac", mw=4096, mh=4096, vectors=1)  # 128 Mbit of weights
    report = plan_design(GraphShape([huge], 4096, 4096), KV260)
    assert not report.fits and "bram36" in report.over


def test_a_forced_reuse_factor_can_overflow_the_board() -> None:
    layer = LayerShape("wide", "QGemm", "mac", mw=512, mh=64, vectors=1)
    assert not plan_design(GraphShape([layer], 512, 64), KV260, reuse_factor=1).fits
    assert plan_design(GraphShape([layer], 512, 64), KV260, reuse_factor=64).fits


def test_compile_fails_with_the_report_when_the_design_does_not_fit(tiny_int8_model: Path) -> None:
    with pytest.raises(DesignDoesNotFit, match="does not fit board 'kv260'") as info:
        compile_model(tiny_int8_model, KV260, max_utilization=0.001)
    assert info.value.report is not None and not info.value.report.fits


def test_binary_round_trip_and_deterministic_content_id(tiny_int8_model: Path) -> None:
    first = compile_model(tiny_int8_model, KV260)
    again = compile_model(tiny_int8_model, KV260)
    assert first.binary == again.binary and first.content_id == again.content_id
    binary = unpack_binary(first.binary)
    assert binary.board == "kv260" and binary.shell_id == KV260.shell_id
    assert binary.clock_mhz == KV260.clock_mhz
    assert "k01_qlinearconv" in binary.kernels and "k03_flatten" not in binary.kernels
    assert binary.model_bytes == tiny_int8_model.read_bytes()
    assert binary.report == first.report
    assert binary.content_id == first.content_id


def test_other_board_gives_another_content_id(tiny_int8_model: Path) -> None:
    assert (
        compile_model(tiny_int8_model, KV260).content_id != compile_model(tiny_int8_model, get_board("u250")).content_id
    )


def test_corrupt_binaries_are_refused(tiny_int8_model: Path) -> None:
    data = compile_model(tiny_int8_model, KV260).binary
    with pytest.raises(BinaryFormatError, match="bad magic"):
        unpack_binary(b"not a binary at all")
    with pytest.raises(BinaryFormatError, match="sha256"):
        unpack_binary(data[:-1] + bytes([data[-1] ^ 1]))


def test_pack_binary_records_the_report() -> None:
    report = plan_design(GraphShape([DENSE], 128, 40), KV260)
    binary = unpack_binary(pack_binary(report, b"model"))
    assert binary.report == report
    assert dataclasses.asdict(binary.report)["used"] == report.used
