"""Small quantized ONNX models built in-process for accelerator tests (no files, no downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
MLP_INT8 = REPO / "modules" / "samples" / "mlp" / "mlp_int8.onnx"
MLP_TEST_SET = REPO / "modules" / "samples" / "mlp" / "test_set.npz"
DIGITS_INT8 = REPO / "modules" / "samples" / "digits" / "digits_int8.onnx"
DIGITS_TEST_SET = REPO / "modules" / "samples" / "digits" / "test_set.npz"


def cnn_fp32(seed: int = 0) -> onnx.ModelProto:
    """Conv-Relu-MaxPool-Conv-Relu-Flatten-Gemm-MatMul-Add on [N,1,8,8]: every int8 op the backends run."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], std: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.normal(size=shape) * std).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g"], transB=1, name="fc"),
        helper.make_node("MatMul", ["g", "w4"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "g"], ["logits"], name="add"),
    ]
    inits = [
        init("w1", (8, 1, 3, 3), 0.3),
        init("b1", (8,), 0.1),
        init("w2", (16, 8, 3, 3), 0.1),
        init("b2", (16,), 0.1),
        init("w3", (10, 256), 0.05),
        init("b3", (10,), 0.1),
        init("w4", (10, 10), 0.3),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def quantize(fp32: onnx.ModelProto, out: Path, calibration: np.ndarray, activation: str = "int8") -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = out.with_suffix(".fp32.onnx")
    onnx.save(fp32, src)
    name = fp32.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(np.array_split(calibration, 4))

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self.batches, None)
            return None if b is None else {name: b}

    quantize_static(
        str(src),
        str(out),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QInt8 if activation == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def cnn_int8(tmp: Path, activation: str = "int8", seed: int = 0) -> Path:
    calib = np.random.default_rng(seed + 1).random((32, 1, 8, 8), dtype=np.float32)
    return quantize(cnn_fp32(seed), tmp / f"cnn_{activation}.onnx", calib, activation)


def with_all_outputs(path: Path, names: list[str]) -> bytes:
    """The model with every named tensor exposed as a graph output (to compare intermediates)."""
    model = onnx.load(str(path))
    del model.graph.output[:]
    for n in names:
        model.graph.output.append(helper.make_empty_tensor_value_info(n))
    return model.SerializeToString()
