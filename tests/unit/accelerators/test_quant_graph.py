from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgefleet.accelerators.errors import UnsupportedModel
from edgefleet.accelerators.quant import (
    ConvLayer,
    GemmLayer,
    MaxPoolLayer,
    QAddLayer,
    infer_shapes,
    lower_model,
    unsupported_ops,
)
from tests.support.quant_models import MLP_INT8, cnn_int8


def test_cnn_lowers_to_expected_layers(tmp_path: Path) -> None:
    graph = lower_model(cnn_int8(tmp_path))
    assert [layer.op for layer in graph.layers] == [
        "QuantizeLinear",
        "QLinearConv",
        "MaxPool",
        "QLinearConv",
        "Flatten",
        "QGemm",
        "QLinearMatMul",
        "QLinearAdd",
        "DequantizeLinear",
    ]
    conv = graph.layers[1]
    assert isinstance(conv, ConvLayer)
    assert conv.weight.shape == (8, 1, 3, 3) and conv.weight.dtype == np.int8
    assert conv.pads == (1, 1, 1, 1) and conv.bias is not None and conv.bias.dtype == np.int32
    pool = graph.layers[2]
    assert isinstance(pool, MaxPoolLayer) and pool.kernel == (2, 2) and pool.strides == (2, 2)
    add = graph.layers[7]
    assert isinstance(add, QAddLayer) and add.b_const is None and len(add.inputs) == 2


def test_gemm_weights_are_k_contiguous(tmp_path: Path) -> None:
    graph = lower_model(cnn_int8(tmp_path))
    qgemm, matmul = graph.layers[5], graph.layers[6]
    assert isinstance(qgemm, GemmLayer) and isinstance(matmul, GemmLayer)
    assert qgemm.weight.shape == (10, 256)  # [N, K] from transB=1
    assert matmul.weight.shape == (10, 10) and matmul.weight.flags.c_contiguous
    original = onnx.numpy_helper.to_array(
        next(i for i in onnx.load(str(tmp_path / "cnn_int8.onnx")).graph.initializer if i.name == "w4_quantized")
    )
    np.testing.assert_array_equal(matmul.weight, original.T)


def test_infer_shapes_follows_the_graph(tmp_path: Path) -> None:
    graph = lower_model(cnn_int8(tmp_path))
    shapes = infer_shapes(graph, {"x": (5, 1, 8, 8)})
    assert shapes[graph.layers[1].outputs[0]] == (5, 8, 8, 8)
    assert shapes[graph.layers[2].outputs[0]] == (5, 8, 4, 4)
    assert shapes[graph.layers[4].outputs[0]] == (5, 256)
    assert shapes["logits"] == (5, 10)


def test_mlp_sample_lowers() -> None:
    graph = lower_model(MLP_INT8)
    assert [layer.op for layer in graph.layers] == [
        "QuantizeLinear",
        "QLinearMatMul",
        "QLinearAdd",
        "QGemm",
        "QGemm",
        "DequantizeLinear",
    ]
    add = graph.layers[2]
    assert isinstance(add, QAddLayer) and add.b_const is not None  # bias add against a constant


def test_unsupported_op_is_named_with_its_node() -> None:
    node = helper.make_node("Sigmoid", ["x"], ["y"], name="the_sigmoid")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph)
    assert unsupported_ops(model) == ["Sigmoid (the_sigmoid)"]
    with pytest.raises(UnsupportedModel, match=r"Sigmoid.*the_sigmoid"):
        lower_model(model)


def test_dynamic_weights_are_refused() -> None:
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 4])
    b = helper.make_tensor_value_info("b", TensorProto.UINT8, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3])
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi")
    model = helper.make_model(helper.make_graph([node], "g", [a, b], [y]))
    with pytest.raises(UnsupportedModel, match=r"mmi.*constant initializer"):
        lower_model(model)
