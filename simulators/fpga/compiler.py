"""Compile a quantized ONNX model for a simulated FPGA board: resources, folding, timing, binary.

The simulated architecture is a FINN-style dataflow pipeline: one kernel per layer, weights held
on chip, layers connected by streams, all layers working at once on successive frames.

Per MAC layer (QLinearConv, QLinearMatMul, QGemm, MatMulInteger, ConvInteger) the layer is a
matrix of MW inputs x MH outputs applied to V vectors per frame (conv: MW = C_in/group*kh*kw,
MH = C_out, V = H_out*W_out; matmul: MW = K, MH = N, V = rows). Folding picks PE | MH and
SIMD | MW (FINN), which fixes the hls4ml reuse factor RF = (MW/SIMD)*(MH/PE):

    multipliers = PE*SIMD = MW*MH/RF                    (hls4ml: DSP = ceil(n_in*n_out / RF))
    DSP         = ceil(multipliers / int8_macs_per_dsp) + PE
                  two int8 products share one DSP48E2 (AMD WP486), the +PE is one DSP per output
                  lane for the int32 -> int8 requantization multiply
    cycles      = V * (MH/PE) * (MW/SIMD) = V * RF      (FINN MVAU cycle model)
    BRAM36      = FINN's BRAM18 estimate for a memory PE*SIMD*wbits wide and RF deep, halved;
                  memories of at most 1024 bits or at most 64 deep are LUTRAM instead
                  (a LUT is a 64x1 RAM: width * ceil(depth/64) LUTs)
    LUT         = 400 per layer (control, stream FIFOs) + 32 per multiplier (adder tree and int32
                  accumulator) + 64 per PE (rounding, clamp, zero point) + LUTRAM
    line buffer = conv: (kh-1)*W_in*C_in*abits + kh*kw*C_in*abits bits, BRAM36 when > 1024 bits

Per stream layer (QuantizeLinear, DequantizeLinear, QLinearAdd, MaxPool, Relu, Softmax) L lanes
(L | C, the channel count, or C*W for elementwise ops on NCHW tensors):

    cycles = ceil(elements_read / L);  LUT = 100 + L * LUT_PER_LANE[op];  DSP = L for ops that
    multiply (Quantize/Dequantize/QLinearAdd rescale, Softmax's exp), else 0;  MaxPool adds a
    (kh-1)*W_in*C*abits line buffer.

Flatten/Reshape/Identity are wiring: no cycles, no resources. The layers are those of the shared
int8 lowering (``edgefleet.accelerators.quant``), so the compiler accepts exactly what the kernels execute.

Pipeline: latency = sum of layer cycles (upper bound: no overlap inside a frame counted),
initiation interval II = max layer cycles, throughput = clock / II frames per second, a batch of N
takes latency + (N-1)*II cycles. Host transfer per frame = (input + output bytes) / link, where
the link is PCIe for cards and the shared DDR for SoC boards.

Folding: unless a reuse factor is forced, a binary search over a target II picks, per layer, the
smallest parallelism that meets it, and keeps the fastest design whose DSP, BRAM36 and LUT use
stay within ``max_utilization`` of what the shell leaves free (default 80%: Vivado rarely closes
timing on a full device). If even the most folded design does not fit, compilation fails with the
report of that design.

Not modelled: real synthesis, placement, routing, timing closure (the clock is the platform
default), URAM (reported, never allocated), flip-flops, DSPs implemented in LUTs, weight streaming
from DDR (weights must fit on chip), SLR crossings, and the static shell beyond a flat share.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.digests import sha256_bytes
from edgefleet.simulators.errors import BinaryFormatError, DesignDoesNotFit
from edgefleet.simulators.fpga.boards import BRAM36_BITS, Board
from edgefleet.simulators.fpga.layers import GraphShape, LayerShape, read_graph

COMPILER_VERSION = "edgefleet-fpga-sim 1"
DEFAULT_MAX_UTILIZATION = 0.8
LUT_PER_LAYER = 400
LUT_PER_MULTIPLIER = 32
LUT_PER_PE = 64
LUTRAM_BITS = 64  # one LUT as 64x1 distributed RAM
LUTRAM_LIMIT_BITS = 1024  # memories this small stay in LUTs
LUT_PER_LANE = {
    "QuantizeLinear": 40,
    "DequantizeLinear": 40,
    "QLinearAdd": 60,
    "MaxPool": 16,
    "Relu": 8,
    "Softmax": 400,
}
RESCALING_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearAdd", "Softmax"})
RESOURCES = ("dsp", "bram36", "luts")

BINARY_MAGIC = b"EFSIMBIN"  # 8 bytes, then u32 little-endian header length, JSON header, ONNX model
BINARY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Folding:
    pe: int = 1
    simd: int = 1  # stream layers: lanes = pe, simd = 1


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op_type: str
    kernel: str
    pe: int
    simd: int
    reuse_factor: int
    macs: int
    multipliers: int
    dsp: int
    bram36: int
    luts: int
    cycles: int


@dataclass(frozen=True)
class CompileReport:
    board: str
    shell_id: str
    clock_mhz: float
    layers: list[LayerEstimate]
    used: dict[str, int]
    available: dict[str, int]
    budget: dict[str, int]  # available * max_utilization
    fits: bool
    over: list[str]  # resources over budget
    latency_cycles: int
    ii_cycles: int
    latency_us: float
    throughput_fps: float
    transfer_us: float  # host link time per frame (inputs + outputs)
    total_macs: int
    max_utilization: float
    int8_mac_packing: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileReport:
        fields = dict(data)
        fields["layers"] = [LayerEstimate(**layer) for layer in data["layers"]]
        return cls(**fields)


# ---- pure resource and cycle model -------------------------------------------------------------


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0] if n > 0 else [1]


def bram18_for_memory(width_bits: int, depth: int) -> int:
    """FINN's block RAM estimate: BRAM18 aspect ratios 512x36, 1Kx18, 2Kx9, 4Kx4, 8Kx2, 16Kx1."""
    if width_bits <= 0 or depth <= 0:
        return 0
    for max_depth, width in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2)):
        if depth <= max_depth:
            return math.ceil(width_bits / width) * math.ceil(depth / max_depth)
    return width_bits * math.ceil(depth / 16384)


def _memory(bits_wide: int, depth: int) -> tuple[int, int]:
    """(bram36, luts) of one memory: LUTRAM when tiny, else block RAM."""
    total = bits_wide * depth
    if total == 0:
        return 0, 0
    if total <= LUTRAM_LIMIT_BITS or depth <= LUTRAM_BITS:
        # shallow memories map to LUTRAM (a LUT is a 64x1 RAM), as Vivado's auto ram_style does
        return 0, bits_wide * math.ceil(depth / LUTRAM_BITS)
    return math.ceil(bram18_for_memory(bits_wide, depth) / 2), 0


def _buffer(bits: int) -> tuple[int, int]:
    if bits <= 0:
        return 0, 0
    if bits <= LUTRAM_LIMIT_BITS:
        return 0, math.ceil(bits / LUTRAM_BITS)
    return math.ceil(bits / BRAM36_BITS), 0


def estimate_layer(layer: LayerShape, folding: Folding, board: Board, index: int) -> LayerEstimate:
    kernel = f"k{index:02d}_{layer.op_type.lower()}"
    if layer.kind == "mac":
        pe, simd = folding.pe, folding.simd
        if layer.mh % pe or layer.mw % simd:
            raise ValueError(
                f"{layer.name}: PE {pe} must divide MH {layer.mh} and SIMD {simd} must divide MW {layer.mw}"
            )
        rf = (layer.mw // simd) * (layer.mh // pe)
        multipliers = pe * simd
        dsp = math.ceil(multipliers / board.int8_macs_per_dsp) + pe
        w_bram, w_luts = _memory(multipliers * layer.weight_bits, rf) if layer.weight_bits else (0, 0)
        kh, kw = layer.window
        line_bits = ((kh - 1) * layer.in_width + kh * kw) * layer.in_channels * layer.act_bits if kh > 1 else 0
        lb_bram, lb_luts = _buffer(line_bits)
        luts = LUT_PER_LAYER + LUT_PER_MULTIPLIER * multipliers + LUT_PER_PE * pe + w_luts + lb_luts
        return LayerEstimate(
            layer.name, layer.op_type, kernel, pe, simd, rf, layer.macs, multipliers, dsp,
            w_bram + lb_bram, luts, layer.vectors * rf,
        )  # fmt: skip
    if layer.kind == "stream":
        lanes = folding.pe
        if layer.channels % lanes:
            raise ValueError(f"{layer.name}: lanes {lanes} must divide the channel count {layer.channels}")
        kh, _ = layer.window
        buf_bram, buf_luts = _buffer((kh - 1) * layer.in_width * layer.in_channels * layer.act_bits)
        luts = 100 + lanes * LUT_PER_LANE.get(layer.op_type, 16) + buf_luts
        dsp = lanes if layer.op_type in RESCALING_OPS else 0
        return LayerEstimate(
            layer.name, layer.op_type, kernel, lanes, 1, 1, 0, 0, dsp, buf_bram, luts,
            math.ceil(layer.elements / lanes),
        )  # fmt: skip
    return LayerEstimate(layer.name, layer.op_type, kernel, 1, 1, 1, 0, 0, 0, 0, 0, 0)


def fold_for_target(layer: LayerShape, target_cycles: int) -> Folding:
    """The least parallel folding whose cycles meet the target; the most parallel one if none does."""
    if layer.kind == "mac":
        options = [
            (pe * simd, -simd, pe, simd)  # fewest multipliers, then wider SIMD (fewer requant DSPs)
            for pe in divisors(layer.mh)
            for simd in divisors(layer.mw)
            if layer.vectors * (layer.mh // pe) * (layer.mw // simd) <= target_cycles
        ]
        if not options:
            return Folding(layer.mh, layer.mw)
        _, _, pe, simd = min(options)
        return Folding(pe, simd)
    if layer.kind == "stream":
        for lanes in divisors(layer.channels):
            if math.ceil(layer.elements / lanes) <= target_cycles:
                return Folding(lanes, 1)
        return Folding(layer.channels, 1)
    return Folding()


def fold_for_reuse(layer: LayerShape, reuse_factor: int) -> Folding:
    """hls4ml-style fixed reuse factor: the least parallel folding with RF <= reuse_factor."""
    if layer.kind != "mac":
        return Folding()
    options = [
        (pe * simd, -simd, pe, simd)
        for pe in divisors(layer.mh)
        for simd in divisors(layer.mw)
        if (layer.mh // pe) * (layer.mw // simd) <= reuse_factor
    ]
    _, _, pe, simd = min(options)  # never empty: PE=MH, SIMD=MW gives RF 1
    return Folding(pe, simd)


def build_report(
    graph: GraphShape, foldings: list[Folding], board: Board, max_utilization: float = DEFAULT_MAX_UTILIZATION
) -> CompileReport:
    layers = [
        estimate_layer(layer, f, board, i) for i, (layer, f) in enumerate(zip(graph.layers, foldings, strict=True))
    ]
    used = {r: sum(getattr(e, r) for e in layers) for r in RESOURCES}
    available = board.available()
    budget = {r: int(available[r] * max_utilization) for r in RESOURCES}
    over = [r for r in RESOURCES if used[r] > budget[r]]
    latency = sum(e.cycles for e in layers)
    ii = max([e.cycles for e in layers] + [1])
    clock_hz = board.clock_mhz * 1e6
    link_gbs = board.pcie_bandwidth_gbs or board.memory_bandwidth_gbs
    return CompileReport(
        board=board.name,
        shell_id=board.shell_id,
        clock_mhz=board.clock_mhz,
        layers=layers,
        used=used,
        available={r: available[r] for r in RESOURCES},
        budget=budget,
        fits=not over,
        over=over,
        latency_cycles=latency,
        ii_cycles=ii,
        latency_us=latency / clock_hz * 1e6,
        throughput_fps=clock_hz / ii,
        transfer_us=(graph.input_bytes + graph.output_bytes) / (link_gbs * 1e9) * 1e6,
        total_macs=sum(e.macs for e in layers),
        max_utilization=max_utilization,
        int8_mac_packing=board.int8_macs_per_dsp > 1,
        notes=[
            "estimate only: no synthesis, placement, routing or timing closure; clock is the platform default",
            "URAM is not allocated; weights must fit in block RAM / LUTRAM",
        ],
    )


def _search(
    graph: GraphShape, board: Board, max_utilization: float, fold: Callable[[LayerShape, int], Folding]
) -> CompileReport:
    """Binary search for the smallest target II whose design fits (fit is monotone in the target)."""

    def report_for(target: int) -> CompileReport:
        return build_report(graph, [fold(layer, target) for layer in graph.layers], board, max_utilization)

    most_folded_ii = max(
        [layer.macs for layer in graph.layers if layer.kind == "mac"]
        + [layer.elements for layer in graph.layers if layer.kind == "stream"]
        + [1]
    )
    slowest = report_for(most_folded_ii)
    if not slowest.fits:
        return slowest
    lo, hi, best = 1, most_folded_ii, slowest
    while lo < hi:
        mid = (lo + hi) // 2
        candidate = report_for(mid)
        if candidate.fits:
            hi, best = mid, candidate
        else:
            lo = mid + 1
    # a layer that cannot go faster (e.g. one channel) bounds the II; fold the others down to it
    return report_for(best.ii_cycles)


def plan_design(
    graph: GraphShape,
    board: Board,
    max_utilization: float = DEFAULT_MAX_UTILIZATION,
    reuse_factor: int | None = None,
) -> CompileReport:
    """The fastest design that fits (or, with ``reuse_factor``, that one design); never raises."""
    if reuse_factor is None:
        return _search(graph, board, max_utilization, fold_for_target)
    if reuse_factor < 1:
        raise ValueError(f"reuse factor must be >= 1, got {reuse_factor}")
    foldings = [fold_for_reuse(layer, reuse_factor) for layer in graph.layers]
    mac_ii = max([layer.vectors * reuse_factor for layer in graph.layers if layer.kind == "mac"] + [1])
    foldings = [
        fold_for_target(layer, mac_ii) if layer.kind == "stream" else f
        for layer, f in zip(graph.layers, foldings, strict=True)
    ]
    return build_report(graph, foldings, board, max_utilization)


def explain_no_fit(report: CompileReport, reuse_factor: int | None = None) -> str:
    parts = [f"{r} {report.used[r]} > {report.budget[r]}" for r in report.over]
    worst = max(report.layers, key=lambda e: (e.bram36, e.dsp, e.luts))
    setting = "even at the most folded setting" if reuse_factor is None else f"with reuse factor {reuse_factor}"
    return (
        f"design does not fit board {report.board!r} {setting}: {', '.join(parts)} "
        f"(budget = {report.max_utilization:.0%} of what the shell leaves free); the largest layer is "
        f"{worst.name} ({worst.op_type}: {worst.dsp} DSP, {worst.bram36} BRAM36, {worst.luts} LUT). "
        "Choose a larger board (`edgefleet-sim fpga boards`), a smaller model, a larger reuse factor, or raise "
        "--max-utilization"
    )


# ---- binary --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FpgaBinary:
    """A compiled design: header metadata plus the ONNX model the kernels execute."""

    header: dict[str, Any]
    model_bytes: bytes
    content_id: str  # sha256 of the whole file

    @property
    def board(self) -> str:
        return str(self.header["board"])

    @property
    def shell_id(self) -> str:
        return str(self.header["shell_id"])

    @property
    def kernels(self) -> list[str]:
        return list(self.header["kernels"])

    @property
    def clock_mhz(self) -> float:
        return float(self.header["clock_mhz"])

    @property
    def report(self) -> CompileReport:
        return CompileReport.from_dict(self.header["report"])


def pack_binary(report: CompileReport, model_bytes: bytes) -> bytes:
    """Deterministic bytes: the same model and board always give the same content id."""
    header = {
        "format": "edgefleet-fpga-sim-binary",
        "format_version": BINARY_FORMAT_VERSION,
        "compiler": COMPILER_VERSION,
        "board": report.board,
        "shell_id": report.shell_id,
        "clock_mhz": report.clock_mhz,
        "kernels": [e.kernel for e in report.layers if e.cycles > 0],
        "model_sha256": sha256_bytes(model_bytes),
        "report": json.loads(json.dumps(report.to_dict())),  # plain JSON types only
    }
    encoded = canonical_json(header)
    return BINARY_MAGIC + struct.pack("<I", len(encoded)) + encoded + model_bytes


def unpack_binary(data: bytes, where: str = "binary") -> FpgaBinary:
    if len(data) < 12 or data[:8] != BINARY_MAGIC:
        raise BinaryFormatError(
            f"{where} is not an edgefleet simulated FPGA binary (bad magic); build one with "
            "`edgefleet-sim fpga compile MODEL --board B`"
        )
    (length,) = struct.unpack("<I", data[8:12])
    try:
        header = json.loads(data[12 : 12 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BinaryFormatError(
            f"{where}: header is not valid JSON ({exc}); the file is corrupt, recompile it"
        ) from exc
    if header.get("format_version") != BINARY_FORMAT_VERSION:
        raise BinaryFormatError(
            f"{where}: binary format version {header.get('format_version')!r} is not {BINARY_FORMAT_VERSION}; recompile it"
        )
    model_bytes = data[12 + length :]
    if sha256_bytes(model_bytes) != header.get("model_sha256"):
        raise BinaryFormatError(f"{where}: embedded model does not match its sha256 in the header; the file is corrupt")
    return FpgaBinary(header=header, model_bytes=model_bytes, content_id=sha256_bytes(data))


# ---- the compile step (reads the model; everything above is pure) --------------------------------


@dataclass(frozen=True)
class CompileResult:
    report: CompileReport
    binary: bytes

    @property
    def content_id(self) -> str:
        return sha256_bytes(self.binary)


def compile_model(
    model_path: Path,
    board: Board,
    max_utilization: float = DEFAULT_MAX_UTILIZATION,
    reuse_factor: int | None = None,
) -> CompileResult:
    """Compile ``model_path`` for ``board``; raises DesignDoesNotFit (with the report) or UnsupportedLayer."""
    model_bytes = Path(model_path).read_bytes()
    report = plan_design(read_graph(onnx.load_from_string(model_bytes)), board, max_utilization, reuse_factor)
    if not report.fits:
        raise DesignDoesNotFit(f"{model_path}: {explain_no_fit(report, reuse_factor)}", report)
    return CompileResult(report, pack_binary(report, model_bytes))


def iter_layer_rows(report: CompileReport) -> Iterable[list[str]]:
    """Table rows for the CLI (pure formatting helper)."""
    clock_hz = report.clock_mhz * 1e6
    for e in report.layers:
        yield [
            e.kernel, e.op_type, str(e.pe), str(e.simd), str(e.reuse_factor), str(e.macs), str(e.dsp),
            str(e.bram36), str(e.luts), str(e.cycles), f"{e.cycles / clock_hz * 1e6:.3f}",
        ]  # fmt: skip
