"""int8 QOperator ONNX graphs lowered to plain-data layers, and an exact numpy executor of them.

Shared by every int8 backend (OpenCL, the FPGA simulator): they all run the same lowered
``QuantGraph`` and are checked against the same reference arithmetic.
"""

from edgefleet.accelerators.quant.graph import (
    ConvLayer,
    DequantizeLayer,
    FlattenLayer,
    GemmLayer,
    Layer,
    MaxPoolLayer,
    QAddLayer,
    Quant,
    QuantGraph,
    QuantizeLayer,
    ReluLayer,
    ReshapeLayer,
    SoftmaxLayer,
    TensorSpec,
    infer_shapes,
    lower_model,
    unsupported_ops,
)
from edgefleet.accelerators.quant.reference import ReferenceExecutor, requantize, run_reference

__all__ = [
    "ConvLayer",
    "DequantizeLayer",
    "FlattenLayer",
    "GemmLayer",
    "Layer",
    "MaxPoolLayer",
    "QAddLayer",
    "Quant",
    "QuantGraph",
    "QuantizeLayer",
    "ReferenceExecutor",
    "ReluLayer",
    "ReshapeLayer",
    "SoftmaxLayer",
    "TensorSpec",
    "infer_shapes",
    "lower_model",
    "requantize",
    "run_reference",
    "unsupported_ops",
]
