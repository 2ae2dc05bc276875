"""int8 GEMM / QLinearConv throughput: our OpenCL kernels on PoCL vs onnxruntime's int8 kernels.

    python -m bench.accel_gemm [--rounds N]

Both sides run the same one-node ONNX models on the same cores in the same process, end to end
(input copy, packing/im2col, GEMM, requantization, output copy). onnxruntime gets as many intra-op
threads as the OpenCL device has compute units (PoCL runs one worker thread per compute unit), so
both use the same cores. Calls alternate between the two sides, one each per round, and the table
gives medians (and the best call) of each; the ratio is OpenCL GOPS / onnxruntime GOPS of the
medians. Every onnxruntime int8 path is measured: s8s8 (exact), u8s8 (AVX2 without VNNI: vpmaddubsw,
whose int16 pair sums saturate, hence its max_abs_diff against the exact result) and QLinearMatMul
u8s8/s8s8. MatMulInteger rows also check our int32 output against an exact int64 numpy product.
Writes bench/results/accel_gemm.json. Bounded to well under 2 min.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from bench.accel_common import (
    interleaved_seconds,
    matmul_integer_model,
    qlinear_matmul_model,
    single_node_model,
    write_results,
)
from edgefleet.accelerators.opencl import OpenCLBackend, OpenCLLoadedModel, OpenCLRuntime
from edgefleet.accelerators.quant import ConvLayer, infer_shapes, lower_model
from tests.support.quant_models import DIGITS_INT8

GEMM_SHAPES = [(256, 1024, 1024), (64, 512, 512)]
CONV_BATCH = 64
GOAL = 0.25  # issue 3: OpenCL at >= 25 % of onnxruntime's int8 GEMM throughput


def _session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _pair(
    model_bytes: bytes,
    feeds: dict[str, np.ndarray],
    runtime: OpenCLRuntime,
    threads: int,
    ops: float,
    rounds: int,
    exact: np.ndarray | None = None,
) -> dict[str, Any]:
    session = _session(model_bytes, threads)
    ours = OpenCLLoadedModel(runtime, lower_model(onnx.load_from_string(model_bytes)))
    theirs_out, ours_out = session.run(None, feeds)[0], next(iter(ours.run(feeds).values()))
    times = interleaved_seconds({"ort": lambda: session.run(None, feeds), "ocl": lambda: ours.run(feeds)}, rounds)
    t_ort, t_ocl = statistics.median(times["ort"]), statistics.median(times["ocl"])
    row: dict[str, Any] = {
        "ort_gops": ops / t_ort / 1e9,
        "opencl_gops": ops / t_ocl / 1e9,
        "ratio": t_ort / t_ocl,
        "ort_best_gops": ops / min(times["ort"]) / 1e9,
        "opencl_best_gops": ops / min(times["ocl"]) / 1e9,
        "rounds": len(times["ort"]),
        "max_abs_diff_vs_ort": int(np.abs(theirs_out.astype(np.int64) - ours_out.astype(np.int64)).max()),
    }
    if exact is not None:
        row["opencl_exact"] = bool(np.array_equal(ours_out.astype(np.int64), exact))
        row["ort_exact"] = bool(np.array_equal(theirs_out.astype(np.int64), exact))
    ours.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per side (medians reported)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = OpenCLBackend()
    if not backend.probe():
        print("skipped: no OpenCL device on this machine (pip install 'pyopencl[pocl]' gives a CPU one)")
        return 0  # nothing to compare is not a failure of the bench run
    runtime = backend.runtime()
    threads = int(runtime.device.max_compute_units)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for m, n, k in GEMM_SHAPES:
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        ops = 2.0 * m * n * k
        a8 = rng.integers(-128, 128, (m, k), dtype=np.int8)
        au = rng.integers(0, 256, (m, k), dtype=np.uint8)
        tile = str(runtime.gemm_config(m))
        cases = [
            ("MatMulInteger s8s8", matmul_integer_model(w, m), a8, True),
            ("MatMulInteger u8s8", matmul_integer_model(w, m, "uint8"), au, True),
            ("QLinearMatMul u8s8", qlinear_matmul_model(w, m), au, False),
            ("QLinearMatMul s8s8", qlinear_matmul_model(w, m, "int8"), a8, False),
        ]
        for name, model, a, check in cases:
            exact = a.astype(np.int64) @ w.astype(np.int64) if check else None
            row = _pair(model, {"a": a}, runtime, threads, ops, args.rounds, exact)
            rows.append({"op": f"{name} {m}x{n}x{k}", "shape": [m, n, k], "tile": tile, **row})
    if DIGITS_INT8.exists():
        graph = lower_model(DIGITS_INT8)
        shapes = infer_shapes(graph, {"input": (CONV_BATCH, 1, 8, 8)})
        for layer in graph.layers:
            if not isinstance(layer, ConvLayer):
                continue
            x_shape, y_shape = shapes[layer.inputs[0]], shapes[layer.outputs[0]]
            kdim = int(np.prod(layer.weight.shape[1:]))
            ops = 2.0 * np.prod(y_shape) * kdim
            model = single_node_model(DIGITS_INT8, layer.name, CONV_BATCH, x_shape)
            dtype = np.uint8 if layer.x.dtype == "uint8" else np.int8
            x = rng.integers(np.iinfo(dtype).min, int(np.iinfo(dtype).max) + 1, x_shape).astype(dtype)
            tile = str(runtime.gemm_config(int(np.prod(y_shape)) // y_shape[1]))
            row = _pair(model, {layer.inputs[0]: x}, runtime, threads, ops, args.rounds)
            rows.append({"op": f"QLinearConv {layer.name} b{CONV_BATCH} {x_shape}->{y_shape}", "tile": tile, **row})

    device = f"{runtime.device.name.strip()} ({runtime.platform.name.strip()})"
    print(f"\nint8 kernels: OpenCL on {device} vs onnxruntime {ort.__version__} CPU ({threads} intra-op threads),")
    print(f"same run, calls alternated; medians of {args.rounds} rounds (best call in brackets)")
    print(f"{'op':<82} {'ort GOPS':>16} {'ocl GOPS':>16} {'ratio':>6}  exact ort/ocl  tile")
    yes_no = {True: "yes", False: "NO", None: "-"}
    for r in rows:
        flags = f"{yes_no[r.get('ort_exact')]}/{yes_no[r.get('opencl_exact')]}"
        print(
            f"{r['op']:<82} {r['ort_gops']:7.1f} ({r['ort_best_gops']:6.1f}) {r['opencl_gops']:7.1f} "
            f"({r['opencl_best_gops']:6.1f}) {r['ratio']:6.2f}  {flags:>13}  {r['tile']}"
        )
    summary = {}
    for m, n, k in GEMM_SHAPES:
        gemm = [r for r in rows if r.get("shape") == [m, n, k]]
        worst = min(gemm, key=lambda r: r["ratio"])
        summary[f"{m}x{n}x{k}"] = {"min_ratio": worst["ratio"], "vs": worst["op"], "goal": GOAL}
        verdict = "meets" if worst["ratio"] >= GOAL else "MISSES"
        print(
            f"{m}x{n}x{k}: lowest ratio {worst['ratio']:.2f} (vs {worst['op']}) {verdict} the {GOAL:.0%} goal "
            "against every onnxruntime int8 path"
        )
    path = write_results(
        "accel_gemm",
        {
            "device": device,
            "onnxruntime": ort.__version__,
            "threads": threads,
            "rounds": args.rounds,
            "rows": rows,
            "summary": summary,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
