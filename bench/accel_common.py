"""Helpers shared by the accelerator benchmarks: one-node int8 models, timing, result files."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RESULTS = Path(__file__).resolve().parent / "results"


def best_seconds(fn: Callable[[], object], repeats: int = 5, budget_s: float = 10.0) -> float:
    """Best of ``repeats`` timed calls after one warm-up (fewer when a call is slow)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_seconds(fns: dict[str, Callable[[], object]], rounds: int = 15, budget_s: float = 20.0) -> dict:
    """Per-call seconds of several functions timed in alternation, one call of each per round.

    On a shared, noisy machine, alternating keeps a burst of outside load from landing on one side
    only, so the ratio of medians compares like with like. One warm-up call each; fewer rounds
    (at least 3) when the calls are slow.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.perf_counter() + budget_s
    for i in range(rounds):
        if i >= 3 and time.perf_counter() > deadline:
            break
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _model(nodes: list, inputs: list, outputs: list, inits: list, ms: bool = False) -> bytes:
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(helper.make_graph(nodes, "bench", inputs, outputs, inits), opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def matmul_integer_model(w_kn: np.ndarray, m: int, a_dtype: str = "int8") -> bytes:
    k, n = w_kn.shape
    a_type = TensorProto.INT8 if a_dtype == "int8" else TensorProto.UINT8
    return _model(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi")],
        [helper.make_tensor_value_info("a", a_type, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(w_kn, "b")],
    )


def qlinear_matmul_model(w_kn: np.ndarray, m: int, a_dtype: str = "uint8") -> bytes:
    k, n = w_kn.shape
    a_type, a_np = (TensorProto.UINT8, np.uint8) if a_dtype == "uint8" else (TensorProto.INT8, np.int8)
    s = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)  # noqa: E731
    z = lambda name, v, t: numpy_helper.from_array(np.array(v, t), name)  # noqa: E731
    inits = [
        s("a_s", 0.02), z("a_z", 128 if a_np is np.uint8 else 3, a_np), numpy_helper.from_array(w_kn, "b"),
        s("b_s", 0.01), z("b_z", 0, np.int8), s("y_s", 0.5), z("y_z", 128 if a_np is np.uint8 else 0, a_np),
    ]  # fmt: skip
    return _model(
        [helper.make_node("QLinearMatMul", ["a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"], ["y"], name="qmm")],
        [helper.make_tensor_value_info("a", a_type, [m, k])],
        [helper.make_tensor_value_info("y", a_type, [m, n])],
        inits,
    )


def single_node_model(model_path: Path, node_name: str, batch: int, input_shape: tuple[int, ...]) -> bytes:
    """One node of an existing model (with its initializers) as a model of its own."""
    full = onnx.load(str(model_path))
    node = next(n for n in full.graph.node if n.name == node_name)
    names = set(node.input)
    inits = [i for i in full.graph.initializer if i.name in names]
    x_type = next(i.data_type for i in full.graph.initializer if i.name == node.input[2])  # x zero point's type
    y_type = next(i.data_type for i in full.graph.initializer if i.name == node.input[7])
    return _model(
        [node],
        [helper.make_tensor_value_info(node.input[0], x_type, [batch, *input_shape[1:]])],
        [helper.make_tensor_value_info(node.output[0], y_type, None)],
        inits,
    )


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "host": platform.node(),
        "machine": platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
