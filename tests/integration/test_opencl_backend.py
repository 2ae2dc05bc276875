"""The OpenCL int8 backend on the real PoCL device: numeric contract, threads, tuning, selection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefleet.accelerators import opencl_tuning
from edgefleet.accelerators.errors import NoVerifiedAccelerator
from edgefleet.accelerators.opencl import OpenCLBackend, OpenCLLoadedModel, gemm_ndrange
from edgefleet.accelerators.opencl_tuning import GemmConfig, TuningCache
from edgefleet.accelerators.quant import DequantizeLayer, ReferenceExecutor
from edgefleet.accelerators.selection import select_backend
from tests.support.quant_models import (
    DIGITS_INT8,
    DIGITS_TEST_SET,
    MLP_INT8,
    MLP_TEST_SET,
    cnn_int8,
    with_all_outputs,
)

pytestmark = [
    pytest.mark.opencl,
    pytest.mark.skipif(not OpenCLBackend().probe(), reason="no OpenCL device (install pyopencl[pocl])"),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[OpenCLBackend]:
    # untuned defaults: tuning is measured separately below and would only slow these tests down
    b = OpenCLBackend(tune=False)
    yield b
    b.close()


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _check_contract(model: OpenCLLoadedModel, path: Path, images: np.ndarray, name: str) -> None:
    """int32 accumulators exact; final int8/uint8 output within 1 LSB on >= 99.9 %; top-1 identical."""
    outputs, accs = model.run_with_accumulators({name: images})
    reference = ReferenceExecutor(model.graph).run_all({name: images})
    assert set(accs) == set(reference.accumulators) and accs
    for layer, acc in accs.items():
        np.testing.assert_array_equal(acc, reference.accumulators[layer], err_msg=layer)

    dequant = model.graph.layers[-1]
    assert isinstance(dequant, DequantizeLayer)
    quantized_name = dequant.inputs[0]  # the model's last int8/uint8 tensor
    theirs_q = ort.InferenceSession(with_all_outputs(path, [quantized_name]), providers=["CPUExecutionProvider"]).run(
        None, {name: images}
    )[0]
    ours = outputs[model.outputs[0].name]
    ours_q = np.rint(ours / np.float32(dequant.x.scale)).astype(np.int64) + int(dequant.x.zero_point)
    lsb = np.abs(ours_q - theirs_q.astype(np.int64))
    assert np.mean(lsb <= 1) >= 0.999, f"{np.mean(lsb <= 1):.4%} within 1 LSB"
    theirs = _ort(path, {name: images})
    np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))


@pytest.mark.skipif(not DIGITS_INT8.exists(), reason="digits sample not generated")
def test_digits_numeric_contract(backend: OpenCLBackend) -> None:
    images = np.load(DIGITS_TEST_SET)["images"]
    _check_contract(backend.load(DIGITS_INT8), DIGITS_INT8, images, "input")  # type: ignore[arg-type]


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_mlp_numeric_contract(backend: OpenCLBackend) -> None:
    images = np.load(MLP_TEST_SET)["images"]
    _check_contract(backend.load(MLP_INT8), MLP_INT8, images, "input")  # type: ignore[arg-type]


@pytest.mark.parametrize("activation", ["int8", "uint8"])
def test_cnn_equals_exact_reference(backend: OpenCLBackend, tmp_path: Path, activation: str) -> None:
    path = cnn_int8(tmp_path, activation)
    model = backend.load(path)
    x = np.random.default_rng(7).random((33, 1, 8, 8), dtype=np.float32)  # odd batch: partial tiles
    ours = model.run({"x": x})["logits"]
    np.testing.assert_array_equal(ours, ReferenceExecutor(model.graph).run({"x": x})["logits"])  # type: ignore[attr-defined]
    if activation == "int8":  # onnxruntime's s8s8 path is exact too (its u8s8 AVX2 path saturates)
        np.testing.assert_array_equal(ours, _ort(path, {"x": x}))


def test_batch_one_and_changing_shapes(backend: OpenCLBackend, tmp_path: Path) -> None:
    path = cnn_int8(tmp_path)
    model = backend.load(path)
    for n in (1, 5, 1, 64):
        x = np.random.default_rng(n).random((n, 1, 8, 8), dtype=np.float32)
        np.testing.assert_array_equal(model.run({"x": x})["logits"], _ort(path, {"x": x}))


def test_run_is_thread_safe(backend: OpenCLBackend, tmp_path: Path) -> None:
    path = cnn_int8(tmp_path)
    model = backend.load(path)
    inputs = [np.random.default_rng(i).random((i + 1, 1, 8, 8), dtype=np.float32) for i in range(4)]
    expected = [_ort(path, {"x": x}) for x in inputs]
    failures: list[str] = []

    def worker(i: int) -> None:
        for _ in range(10):
            got = model.run({"x": inputs[i]})["logits"]
            if not np.array_equal(got, expected[i]):
                failures.append(f"thread {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("portable", [False, True], ids=["device-madd", "portable-madd"])
@pytest.mark.parametrize(
    "config", [GemmConfig(1, 8, 16, (16, 1)), GemmConfig(2, 5, 16), GemmConfig(3, 4, 8), GemmConfig(1, 4, 16, (1, 8))]
)
def test_gemm_kernel_is_exact_at_the_operand_extremes(
    backend: OpenCLBackend, config: GemmConfig, portable: bool
) -> None:
    """The GEMM kernel alone, int32 out: equal to an int64 product for centered operands in [-255, 255].

    Partial tiles on both sides (M, N not multiples of any tile), and rows/columns at +-255 so every
    int16 pair sum is at its largest. ``portable`` forces the plain-OpenCL multiply-add that devices
    without the x86 pmaddwd builtin compile, so that path is checked here too.
    """
    import pyopencl as cl

    runtime = backend.runtime()
    m, n, kp = 37, 29, 96
    rng = np.random.default_rng(3)
    a = rng.integers(-255, 256, (m, kp)).astype(np.int16)
    w = rng.integers(-255, 256, (n, kp)).astype(np.int16)
    a[0], a[1], w[0], w[1] = 255, -255, 255, -255
    bias = rng.integers(-1000, 1000, n).astype(np.int32)
    expected = a.astype(np.int64) @ w.T.astype(np.int64) + bias
    defines: dict[str, str | int] = {"PORTABLE_MADD": 1} if portable else {}
    program = runtime.program(
        "qgemm.cl", TM=config.tm, TN=config.tn, VW=config.vw, OUT_MODE=1, OUT_T="int", IN_T="char", **defines
    )
    mf = cl.mem_flags
    # named: clSetKernelArg does not retain buffers, so they must outlive the launch
    inputs = [
        cl.Buffer(runtime.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=h)
        for h in (a, w, bias, np.ones(n, np.float32))
    ]
    y = cl.Buffer(runtime.context, mf.READ_WRITE, m * n * 4)
    kernel = cl.Kernel(program, "qgemm")
    i32 = np.int32
    kernel.set_args(
        *inputs, y, y, i32(m), i32(n), i32(kp), i32(1), i32(n), i32(0), i32(0), i32(0), i32(0), i32(0)
    )  # fmt: skip
    gsize, lsize = gemm_ndrange(config, m, n)
    out = np.empty((m, n), np.int32)
    with runtime.lock:
        cl.enqueue_nd_range_kernel(runtime.queue, kernel, gsize, lsize)
        cl.enqueue_copy(runtime.queue, out, y)
    np.testing.assert_array_equal(out, expected)


def test_unsupported_op_is_named(backend: OpenCLBackend) -> None:
    node = onnx.helper.make_node("Sigmoid", ["x"], ["y"], name="act")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    support = backend.supports(onnx.helper.make_model(graph))
    assert not support.ok and "Sigmoid" in support.reason and "act" in support.reason


def test_tuning_measures_and_caches_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = (GemmConfig(1, 4, 8), GemmConfig(1, 8, 16))
    monkeypatch.setitem(opencl_tuning.CANDIDATES, "small_m", small)
    monkeypatch.setitem(opencl_tuning.TUNING_SHAPES, "small_m", (1, 64, 64))
    cache = TuningCache(tmp_path / "gemm.json")
    tuned = OpenCLBackend(tune=True, cache=cache)
    runtime = tuned.runtime()
    chosen = runtime.gemm_config(1)
    assert chosen in small
    assert cache.get(runtime.device_key, "small_m") == chosen
    # a second runtime on the same device reads the cache instead of measuring
    monkeypatch.setitem(opencl_tuning.CANDIDATES, "small_m", ())
    assert OpenCLBackend(tune=True, cache=cache).runtime().gemm_config(1) == chosen


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_selector_verifies_and_times_opencl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_CACHE_DIR", str(tmp_path))  # tuning, if it runs, stays out of $HOME
    chosen = select_backend(MLP_INT8, ["opencl", "cpu"], batch_size=8)
    assert {c.kind for c in chosen.candidates} == {"opencl", "cpu"}
    assert all(c.verified for c in chosen.candidates), chosen.reason
    assert set(chosen.timings_ms) == {"opencl", "cpu"}
    faster = min(chosen.timings_ms, key=lambda k: chosen.timings_ms[k])
    assert chosen.backend == faster and chosen.reason.startswith(f"{faster}: verified")
    only = select_backend(MLP_INT8, ["opencl"], required=True)
    assert only.backend == "opencl" and only.loaded.backend == "opencl"


def test_required_accelerator_with_unsupported_model(tmp_path: Path) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    model = onnx.helper.make_model(
        onnx.helper.make_graph([onnx.helper.make_node("Sigmoid", ["x"], ["y"], name="act")], "g", [x], [y]),
        opset_imports=[onnx.helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    path = tmp_path / "sigmoid.onnx"
    onnx.save(model, path)
    with pytest.raises(NoVerifiedAccelerator, match=r"opencl: unsupported: op Sigmoid"):
        select_backend(path, ["opencl"], required=True)
    fallback = select_backend(path, ["opencl", "cpu"])
    assert fallback.backend == "cpu" and "Sigmoid" in fallback.reason
