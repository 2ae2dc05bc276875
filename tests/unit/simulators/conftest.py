from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


class _Calibration(CalibrationDataReader):
    def __init__(self, rng: np.random.Generator) -> None:
        self._batches = iter([{"x": rng.random((1, 1, 8, 8), dtype=np.float32)} for _ in range(8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@pytest.fixture(scope="session")
def tiny_int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv(1->8, 3x3) -> Relu -> MaxPool(3) -> Flatten -> Gemm(32->10), quantized to QOperator int8."""
    rng = np.random.default_rng(0)
    weights = {
        "W1": rng.normal(size=(8, 1, 3, 3)).astype(np.float32) * 0.3,
        "B1": np.zeros(8, np.float32),
        "W2": rng.normal(size=(32, 10)).astype(np.float32) * 0.1,
        "B2": np.zeros(10, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[3, 3]),
        helper.make_node("Flatten", ["p1"], ["f1"]),
        helper.make_node("Gemm", ["f1", "W2", "B2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, n) for n, a in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("tiny")
    fp32, int8 = root / "tiny_fp32.onnx", root / "tiny_int8.onnx"
    onnx.save(model, fp32)
    quantize_static(
        str(fp32), str(int8), _Calibration(rng), quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return int8
