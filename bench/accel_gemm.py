"""int8 GEMM / QLinearConv throughput: our OpenCL kernels on PoCL vs onnxruntime's int8 kernels.

    python -m bench.accel_gemm

Both sides run the same one-node ONNX models on the same cores in the same process, end to end
(input copy, packing/im2col, GEMM, requantization, output copy). Prints a table with GOPS and the
OpenCL/onnxruntime ratio, and writes bench/results/accel_gemm.json. Bounded to well under 2 min.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from accelerators.opencl import OpenCLBackend, OpenCLLoadedModel
from accelerators.quant import ConvLayer, infer_shapes, lower_model
from bench.accel_common import (
    best_seconds,
    matmul_integer_model,
    qlinear_matmul_model,
    single_node_model,
    write_results,
)
from tests.unit.accelerators.quant_models import DIGITS_INT8

GEMM_SHAPES = [(256, 1024, 1024), (64, 512, 512)]
CONV_BATCH = 64


def _pair(model_bytes: bytes, feeds: dict[str, np.ndarray], backend: OpenCLBackend, ops: float) -> dict[str, Any]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    ours = OpenCLLoadedModel(backend.runtime(), lower_model(onnx.load_from_string(model_bytes)))
    theirs_out, ours_out = session.run(None, feeds)[0], next(iter(ours.run(feeds).values()))
    t_ort = best_seconds(lambda: session.run(None, feeds))
    t_ocl = best_seconds(lambda: ours.run(feeds))
    return {
        "ort_gops": ops / t_ort / 1e9,
        "opencl_gops": ops / t_ocl / 1e9,
        "ratio": t_ort / t_ocl,
        "max_abs_diff": int(np.abs(theirs_out.astype(np.int64) - ours_out.astype(np.int64)).max()),
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = OpenCLBackend()
    if not backend.probe():
        print("no OpenCL device: nothing to measure")
        return 1
    runtime = backend.runtime()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for m, n, k in GEMM_SHAPES:
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        ops = 2.0 * m * n * k
        a8 = rng.integers(-128, 128, (m, k), dtype=np.int8)
        au = rng.integers(0, 256, (m, k), dtype=np.uint8)
        cfg = runtime.gemm_config(m)
        rows.append(
            {
                "op": f"MatMulInteger s8s8 {m}x{n}x{k}",
                "tile": str(cfg),
                **_pair(matmul_integer_model(w, m), {"a": a8}, backend, ops),
            }
        )
        rows.append(
            {
                "op": f"MatMulInteger u8s8 {m}x{n}x{k}",
                "tile": str(cfg),
                **_pair(matmul_integer_model(w, m, "uint8"), {"a": au}, backend, ops),
            }
        )
        rows.append(
            {
                "op": f"QLinearMatMul u8s8 {m}x{n}x{k}",
                "tile": str(cfg),
                **_pair(qlinear_matmul_model(w, m), {"a": au}, backend, ops),
            }
        )
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
            cfg = runtime.gemm_config(int(np.prod(y_shape)) // y_shape[1])
            rows.append(
                {
                    "op": f"QLinearConv {layer.name} b{CONV_BATCH} {x_shape}->{y_shape}",
                    "tile": str(cfg),
                    **_pair(model, {layer.inputs[0]: x}, backend, ops),
                }
            )

    device = f"{runtime.device.name.strip()} ({runtime.platform.name.strip()})"
    print(f"\nint8 kernels: OpenCL on {device} vs onnxruntime {ort.__version__} CPU, same run")
    print(f"{'op':<72} {'ort GOPS':>9} {'ocl GOPS':>9} {'ratio':>6}  tile")
    for r in rows:
        print(f"{r['op']:<72} {r['ort_gops']:9.1f} {r['opencl_gops']:9.1f} {r['ratio']:6.2f}  {r['tile']}")
    path = write_results("accel_gemm", {"device": device, "onnxruntime": ort.__version__, "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
