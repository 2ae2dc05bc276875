"""Train the quantized MLP sample on scikit-learn's digits and export it as int8 QOperator ONNX.

    python -m edgefleet.modules.samples.mlp.train          # rewrites mlp_fp32.onnx, mlp_int8.onnx, test_set.npz here

The network is 64 -> 128 -> 64 -> 10 (ReLU). Its first layer is exported as MatMul + Add and the
others as Gemm, so the int8 model exercises QLinearMatMul, QLinearAdd and QGemm (com.microsoft).
Activations and weights are int8 (QInt8): onnxruntime's uint8 x int8 kernels on AVX2 saturate
16-bit intermediate sums (vpmaddubsw), which would make the onnxruntime reference itself inexact.
Deterministic: fixed seeds, fixed split.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
HIDDEN = (128, 64)


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_tr, x_te, y_tr, y_te


def export_fp32(coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> onnx.ModelProto:
    inits = []
    for i, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))  # [in, out]
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
    nodes = [
        helper.make_node("MatMul", ["input", "w0"], ["mm0"], name="fc0_matmul"),
        helper.make_node("Add", ["mm0", "b0"], ["fc0"], name="fc0_add"),
        helper.make_node("Relu", ["fc0"], ["h0"], name="relu0"),
        helper.make_node("Gemm", ["h0", "w1", "b1"], ["fc1"], name="fc1"),
        helper.make_node("Relu", ["fc1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "w2", "b2"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgefleet")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(np.array_split(calibration, 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    quantize_static(
        str(fp32_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )


def main() -> None:
    from sklearn.neural_network import MLPClassifier

    x_tr, x_te, y_tr, y_te = _load_digits()
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=300, random_state=0)
    clf.fit(x_tr, y_tr)
    fp32 = export_fp32(clf.coefs_, clf.intercepts_)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_fp32 = Path(tmp) / "mlp_fp32.onnx"
        onnx.save(fp32, tmp_fp32)
        quantize_int8(tmp_fp32, HERE / "mlp_int8.onnx", x_tr[:512])
    onnx.save(fp32, HERE / "mlp_fp32.onnx")
    np.savez_compressed(HERE / "test_set.npz", images=x_te, labels=y_te)
    print(f"test accuracy (scikit-learn fp32): {clf.score(x_te, y_te):.4f}")


if __name__ == "__main__":
    main()
