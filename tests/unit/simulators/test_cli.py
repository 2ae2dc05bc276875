from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.simulators.cli import main
from edgefleet.simulators.fpga.compiler import unpack_binary


def test_boards_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fpga", "boards", "--output", "json"]) == 0
    boards = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert boards["kv260"]["dsp"] == 1248 and boards["u250"]["source"]


def test_boards_table_names_every_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fpga", "boards"]) == 0
    out = capsys.readouterr().out
    assert "kv260" in out and "u250" in out and "DS987" in out


def test_compile_writes_the_binary_and_prints_the_report(
    tiny_int8_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.efsim"
    assert main(["fpga", "compile", str(tiny_int8_model), "--board", "u250", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "k01_qlinearconv" in text and "fit: yes" in text
    assert unpack_binary(out.read_bytes()).board == "u250"


def test_compile_json_reports_no_fit_and_fails(tiny_int8_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "fpga",
        "compile",
        str(tiny_int8_model),
        "--board",
        "kv260",
        "--max-utilization",
        "0.001",
        "--output",
        "json",
    ]
    assert main(args) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["fits"] is False and result["report"]["over"]


def test_unknown_board_is_an_error(tiny_int8_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fpga", "compile", str(tiny_int8_model), "--board", "nope"]) == 1
    assert "unknown FPGA board 'nope'" in capsys.readouterr().err
