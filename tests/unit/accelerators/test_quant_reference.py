from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.accelerators.quant import Quant, ReferenceExecutor, lower_model, requantize
from edgefleet.accelerators.quant.reference import conv_accumulate, quantize
from tests.support.quant_models import MLP_INT8, MLP_TEST_SET, cnn_int8, with_all_outputs


def _q(dtype: str = "int8", zp: int = 0) -> Quant:
    return Quant(np.float32(1.0).reshape(()), np.int32(zp).reshape(()), dtype)


def test_requantize_rounds_half_to_even_then_saturates() -> None:
    acc = np.array([1, 3, 5, -1, -3, 7, 1000, -1000], np.int64)
    out = requantize(acc, np.float32(0.5), _q("int8"))
    np.testing.assert_array_equal(out, [0, 2, 2, 0, -2, 4, 127, -128])
    out_u8 = requantize(acc, np.float32(0.5), _q("uint8", zp=10))
    np.testing.assert_array_equal(out_u8, [10, 12, 12, 10, 8, 14, 255, 0])


def test_quantize_divides_by_scale_like_mlas() -> None:
    q = Quant(np.float32(0.1).reshape(()), np.int32(0).reshape(()), "int8")
    x = np.array([0.05, 0.15, 0.25, -0.25, 100.0], np.float32)
    # 0.05/0.1 is 0.5 in float32 -> ties to even (0); 0.15/0.1 is 1.4999999 -> 1
    np.testing.assert_array_equal(quantize(x, q), np.rint(np.clip(x / np.float32(0.1), -128, 127)).astype(np.int8))


def test_conv_accumulate_matches_direct_loop(tmp_path: Path) -> None:
    graph = lower_model(cnn_int8(tmp_path))
    conv = graph.layers[3]
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(2, 8, 4, 4), dtype=np.int8)
    acc = conv_accumulate(conv, x)  # type: ignore[arg-type]
    xzp, w = int(conv.x.zero_point), conv.weight.astype(np.int64)  # type: ignore[attr-defined]
    xp = np.pad(x.astype(np.int64) - xzp, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expect = np.zeros_like(acc)
    for n in range(2):
        for m in range(w.shape[0]):
            for i in range(4):
                for j in range(4):
                    expect[n, m, i, j] = (xp[n, :, i : i + 3, j : j + 3] * w[m]).sum() + conv.bias[m]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(acc, expect)


def _compare_every_tensor(path: Path, feeds: dict[str, np.ndarray]) -> None:
    graph = lower_model(path)
    result = ReferenceExecutor(graph).run_all(feeds)
    names = [layer.outputs[0] for layer in graph.layers]
    session = ort.InferenceSession(with_all_outputs(path, names), providers=["CPUExecutionProvider"])
    for name, theirs in zip(names, session.run(names, feeds), strict=True):
        ours = result.tensors[name]
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_reference_equals_onnxruntime_on_int8_cnn(tmp_path: Path) -> None:
    feeds = {"x": np.random.default_rng(5).random((64, 1, 8, 8), dtype=np.float32)}
    _compare_every_tensor(cnn_int8(tmp_path), feeds)


@pytest.mark.skipif(not MLP_INT8.exists(), reason="MLP sample not generated")
def test_reference_equals_onnxruntime_on_mlp_sample() -> None:
    images = np.load(MLP_TEST_SET)["images"]
    _compare_every_tensor(MLP_INT8, {"input": images})
