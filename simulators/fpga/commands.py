"""The ``edgefleet-sim fpga`` subcommands: list boards, compile a model for one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgefleet.simulators.errors import DesignDoesNotFit
from edgefleet.simulators.fpga.boards import BOARDS, get_board
from edgefleet.simulators.fpga.compiler import DEFAULT_MAX_UTILIZATION, CompileReport, compile_model, iter_layer_rows
from edgefleet.simulators.fpga.driver import BINARY_SUFFIX

LAYER_HEADERS = ["kernel", "op", "PE", "SIMD", "RF", "MACs", "DSP", "BRAM36", "LUT", "cycles", "latency us"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _boards(args: argparse.Namespace) -> int:
    if args.output == "json":
        print(json.dumps([b.to_dict() for b in BOARDS.values()], indent=2))
        return 0
    rows = [
        [
            b.name, b.category, b.part.split(" ")[0], str(b.dsp), str(b.bram36), str(b.uram), f"{b.luts:,}",
            f"{b.clock_mhz:g}", f"{b.memory_bandwidth_gbs:g}", f"{b.pcie_bandwidth_gbs:g}" if b.pcie_bandwidth_gbs else "-",
            b.shell_id,
        ]
        for b in BOARDS.values()
    ]  # fmt: skip
    headers = ["board", "class", "part", "DSP", "BRAM36", "URAM", "LUT", "MHz", "mem GB/s", "PCIe GB/s", "shell"]
    print(format_table(headers, rows))
    print()
    for b in BOARDS.values():
        print(f"{b.name}: {b.source}")
    return 0


def _resource_row(report: CompileReport, resource: str) -> list[str]:
    used, available = report.used[resource], report.available[resource]
    share = f"{used / available:.1%}" if available else "-"
    return [resource, str(used), str(report.budget[resource]), str(available), share]


def render_report(report: CompileReport) -> str:
    lines = [
        f"board {report.board} (shell {report.shell_id}) at {report.clock_mhz:g} MHz",
        "",
        format_table(LAYER_HEADERS, list(iter_layer_rows(report))),
        "",
        format_table(
            ["resource", "used", "budget", "available", "use of available"],
            [_resource_row(report, r) for r in report.used],
        ),
        "",
        f"total MACs/frame {report.total_macs:,}; int8 MAC packing (2 per DSP48E2): "
        f"{'modelled' if report.int8_mac_packing else 'off'}",
        f"latency {report.latency_cycles} cycles = {report.latency_us:.3f} us; II {report.ii_cycles} cycles; "
        f"throughput {report.throughput_fps:,.0f} frames/s; host transfer {report.transfer_us:.3f} us/frame",
        f"fit: {'yes' if report.fits else 'NO, over budget: ' + ', '.join(report.over)} "
        f"(budget = {report.max_utilization:.0%} of what the shell leaves free)",
        *(f"note: {n}" for n in report.notes),
    ]
    return "\n".join(lines)


def _compile(args: argparse.Namespace) -> int:
    board = get_board(args.board)
    model = Path(args.model)
    if not model.is_file():
        print(f"error: model file {model} does not exist", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else model.with_name(f"{model.stem}.{board.name}{BINARY_SUFFIX}")
    result: dict[str, Any]
    try:
        compiled = compile_model(model, board, args.max_utilization, args.reuse_factor)
    except DesignDoesNotFit as exc:
        if exc.report is None:
            raise
        if args.output == "json":
            print(json.dumps({"fits": False, "error": str(exc), "report": exc.report.to_dict()}, indent=2))
        else:
            print(render_report(exc.report))
            print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    out.write_bytes(compiled.binary)
    result = {"fits": True, "binary": str(out), "content_id": compiled.content_id, "report": compiled.report.to_dict()}
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(render_report(compiled.report))
        print(f"\nwrote {out} ({len(compiled.binary):,} bytes), content id {compiled.content_id}")
    return 0


def register(areas: Any) -> None:
    """Add ``fpga`` and its subcommands to the top-level subparsers."""
    fpga = areas.add_parser("fpga", help="simulated FPGA boards: list them, compile models for them")
    commands = fpga.add_subparsers(dest="command", required=True, metavar="COMMAND")

    boards = commands.add_parser("boards", help="list the simulated boards and where their figures come from")
    boards.add_argument("--output", choices=["table", "json"], default="table")
    boards.set_defaults(func=_boards)

    comp = commands.add_parser(
        "compile", help="compile a quantized ONNX model for a board; report resources and timing"
    )
    comp.add_argument("model", help="int8 QOperator ONNX model")
    comp.add_argument("--board", required=True, help=f"one of: {', '.join(BOARDS)}")
    comp.add_argument(
        "-o", "--out", help=f"binary to write (default: MODEL_STEM.BOARD{BINARY_SUFFIX} next to the model)"
    )
    comp.add_argument("--reuse-factor", type=int, default=None, help="force one hls4ml reuse factor for all MAC layers")
    comp.add_argument(
        "--max-utilization", type=float, default=DEFAULT_MAX_UTILIZATION,
        help="share of the free DSP/BRAM/LUT a design may use (default %(default)s)",
    )  # fmt: skip
    comp.add_argument("--output", choices=["table", "json"], default="table")
    comp.set_defaults(func=_compile)
